"""Extractive QA inside the stages: the QA head, distillation of start and end logits
against a hand computation, window logits and their fidelity measures against closed
forms, the runtime's QA evaluation against the independent predict_answers path, the
offline data split, a QA model's save/load round trip, the tables' EM/F1 columns, and
the config errors."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpaf.config import ConfigError, check_qa, validate_config
from lpaf.distill import DistillationHook, logit_distillation
from lpaf.evaluate.evaluation import QA_MASKED, output_fidelity, predict
from lpaf.modeling import load_for_task, load_model
from lpaf.qa.evaluate import predict_answers
from lpaf.qa.features import QuestionTooLongError, windows
from lpaf.qa.task import QASettings, QAWindows, load_squad, split_metrics, train_windows
from lpaf.recover.results import read_records, table_columns, write_main_table
from lpaf.tasks import get_task

from .test_squad_evaluate import RECORDS, _Oracle

SQUAD = get_task("SQuAD")
SETTINGS = QASettings(max_seq_length=32, doc_stride=8)


def _data(records=RECORDS) -> datasets.Dataset:
    return datasets.Dataset.from_list(records)


def test_load_for_task_gives_a_span_head(minilm_tokenizer):
    model, _ = load_for_task("tiny-bert", SQUAD, seed=0)
    assert type(model).__name__.endswith("ForQuestionAnswering")
    out = model(**minilm_tokenizer(["a question"], ["a context"], return_tensors="pt"))
    assert out.start_logits.shape == out.end_logits.shape


def test_logit_distillation_is_the_mean_of_start_and_end_kl():
    g = torch.Generator().manual_seed(0)
    s_start, s_end, t_start, t_end = (torch.randn(3, 7, generator=g) for _ in range(4))
    student = SimpleNamespace(start_logits=s_start, end_logits=s_end)
    teacher = SimpleNamespace(start_logits=t_start, end_logits=t_end)
    temperature = 2.0

    def kl(s, t):  # by hand: sum_i p_i (log p_i - log q_i), mean over rows, * T^2
        p = F.softmax(t / temperature, -1)
        q = F.softmax(s / temperature, -1)
        return (p * (p.log() - q.log())).sum(-1).mean() * temperature**2

    expected = (kl(s_start, t_start) + kl(s_end, t_end)) / 2
    got = logit_distillation(student, teacher, temperature)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(logit_distillation(teacher, teacher, temperature)) == pytest.approx(0, abs=1e-6)


def test_distillation_hook_keeps_span_targets_from_the_teacher(minilm_tokenizer):
    seen = {}

    class Teacher(torch.nn.Module):
        def forward(self, **kwargs):
            seen.update(kwargs)
            n = kwargs["input_ids"].shape[1]
            return SimpleNamespace(start_logits=torch.zeros(1, n), end_logits=torch.zeros(1, n))

    hook = DistillationHook(Teacher(), temperature=1.0, alpha=1.0)
    batch = {
        "input_ids": torch.ones(1, 5, dtype=torch.long),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "start_positions": torch.tensor([1]),
        "end_positions": torch.tensor([2]),
    }
    logits = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    student = SimpleNamespace(start_logits=logits, end_logits=logits)
    loss = hook.loss(batch, student, torch.tensor(0.0), None)
    assert set(seen) == {"input_ids", "attention_mask"}
    # alpha 1: the KD term alone, KL(uniform || softmax(logits)) for both, by hand
    q = F.softmax(logits, -1)
    expected = float((0.2 * (math.log(0.2) - q.log())).sum())
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_predict_masks_padding_and_fidelity_matches_closed_forms(minilm_tokenizer):
    split = QAWindows(_data(), minilm_tokenizer, SETTINGS)
    oracle = _Oracle(minilm_tokenizer)
    from lpaf.data import collator

    logits = predict(oracle, split, collator(minilm_tokenizer), batch_size=2)
    lengths = [len(ids) for ids in split["input_ids"]]
    assert logits.shape == (len(split), max(lengths), 2)
    for row, n in enumerate(lengths):
        assert (logits[row, n:] == QA_MASKED).all()
    labels = np.asarray(split["labels"])
    # the oracle's window logits are 10 at the label, 0 at the other real tokens
    fid = output_fidelity(SQUAD, logits, labels, reference=logits)
    expected_loss = np.mean([-10 + math.log(math.exp(10) + n - 1) for n in lengths])
    assert fid["dev_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert fid["kl_from_reference"] == pytest.approx(0.0, abs=1e-9)
    assert fid["agreement"] == 1.0
    flipped = logits.copy()
    flipped[..., [0, 1]] = logits[..., [1, 0]]  # start and end swapped
    differs = (labels[:, 0] != labels[:, 1]).mean()
    assert output_fidelity(SQUAD, flipped, labels, reference=logits)["agreement"] == (
        pytest.approx(1 - differs)
    )


def test_runtime_qa_scoring_agrees_with_predict_answers(minilm_tokenizer):
    """Two paths from logits to answers: QAWindows (runtime) and predict_answers."""
    split = QAWindows(_data(), minilm_tokenizer, SETTINGS)
    from lpaf.data import collator

    oracle = _Oracle(minilm_tokenizer)
    logits = predict(oracle, split, collator(minilm_tokenizer), batch_size=2)
    ours = dict(zip([r["id"] for r in split.records], split.answers(logits), strict=True))
    theirs = predict_answers(oracle, minilm_tokenizer, RECORDS, 32, 8, batch_size=3)
    assert ours == theirs == {"q0": "limas", "q1": "alpha bravo charlie"}
    assert split_metrics(split, logits) == {"exact_match": 1.0, "f1": 1.0, "main": 1.0}


def test_train_windows_hold_the_head_targets(minilm_tokenizer):
    rows = train_windows(_data(), minilm_tokenizer, SETTINGS)
    feats = windows(
        minilm_tokenizer,
        [r["question"] for r in RECORDS],
        [r["context"] for r in RECORDS],
        32,
        8,
        [r["answers"] for r in RECORDS],
    )
    assert rows["start_positions"] == feats["start_positions"]
    assert rows["end_positions"] == feats["end_positions"]
    assert "offset_mapping" not in rows.column_names


def test_offline_split_is_by_article_and_recorded():
    train, evals, record = load_squad(SQUAD, "local", QASettings(dev_articles=10))
    dev = evals["validation"]
    assert len(train) + len(dev) == 10570 and record["dev_questions"] == len(dev)
    assert set(train["title"]).isdisjoint(dev["title"])
    assert sorted(set(dev["title"])) == record["dev_articles"] and len(record["dev_articles"]) == 10
    again = load_squad(SQUAD, "local", QASettings(dev_articles=10))[2]
    assert again["dev_articles"] == record["dev_articles"]  # seeded


def test_stride_that_cannot_advance_is_a_clear_error(minilm_tokenizer):
    # 21 words: 23 tokens with [CLS]/[SEP], 32 - 23 - 1 = 8 context tokens a window,
    # not more than the stride: the tokenizer would panic (checked by hand)
    context = "some context here that is long enough " * 5
    with pytest.raises(QuestionTooLongError, match="doc_stride"):
        windows(minilm_tokenizer, [" ".join(["word"] * 21)], [context], 32, 8)
    assert windows(minilm_tokenizer, [" ".join(["word"] * 20)], [context], 32, 8)["input_ids"]


def test_qa_model_round_trips(tmp_path, minilm_tokenizer):
    model, _ = load_for_task("tiny-bert", SQUAD, seed=3)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    inputs = minilm_tokenizer(["q"], ["a context"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.end_logits, b.end_logits)


def test_config_errors_name_the_qa_key(tmp_path):
    with pytest.raises(ConfigError, match="qa.doc_stride"):
        check_qa({"qa": {"doc_stride": 64, "max_seq_length": 64}})
    config = {"tasks": ["SQuAD"], "model": "tiny-bert", "qa": {"local_dir": str(tmp_path)}}
    with pytest.raises(ConfigError, match="dev-v1.1.json"):
        validate_config(config)


def _evaluation(path, main, em, constant=(0.1, 0.0)):
    path.write_text(
        json.dumps(
            {
                "main_metric": "f1",
                "main": main,
                "metrics": {"validation": {"exact_match": em, "f1": main, "main": main}},
                "constant": {
                    "validation": {
                        "exact_match": constant[1],
                        "f1": constant[0],
                        "main": constant[0],
                    }
                },
                "collapsed": False,
                "parameters": {"retained_fraction": 1.0, "total": 10, "non_embedding": 5},
                "latency": {"latency_ms_bs1": 1.0},
                "precision": "fp32",
            }
        )
    )
    return str(path)


def test_tables_give_em_and_f1_columns(tmp_path):
    records = [
        {
            "pipeline": "fine-tuned",
            "rho": 1.0,
            "task": "SQuAD",
            "seed": seed,
            "path": _evaluation(tmp_path / f"{seed}.json", main, em),
        }
        for seed, main, em in ((1, 0.5, 0.4), (2, 0.7, 0.6))
    ]
    rows = read_records(records)
    assert [r["task"] for r in rows] == ["SQuAD EM", "SQuAD F1"] * 2
    assert [r["score"] for r in rows] == pytest.approx([40, 50, 60, 70])
    assert table_columns(["SST-2", "SQuAD"]) == ["SST-2", "SQuAD EM", "SQuAD F1"]
    out = {k: tmp_path / f"main.{k}" for k in ("csv", "md", "tex")}
    write_main_table(records, ["fine-tuned"], ["SQuAD"], out["csv"], out["md"], out["tex"])
    md = out["md"].read_text()
    assert "SQuAD EM" in md and "SQuAD F1" in md
    assert "50.0 ± 14.1" in md and "60.0 ± 14.1" in md  # EM and F1 means and stds


def test_compressed_qa_model_round_trips_bit_identically(tmp_path, minilm_tokenizer):
    from lpaf.compressed import save_compressed
    from lpaf.factorize import factorize_model
    from lpaf.factorize.layer import LowRankLinear

    model, _ = load_for_task("tiny-bert", SQUAD, seed=4)
    model.eval()
    factorize_model(model, "svd", rho=0.3)
    save_compressed(model, minilm_tokenizer, tmp_path / "m", {"method": "svd", "stage": "t"})
    loaded = load_model(tmp_path / "m")
    assert type(loaded).__name__.endswith("ForQuestionAnswering")
    assert any(isinstance(m, LowRankLinear) for m in loaded.modules())
    inputs = minilm_tokenizer(["which one?"], ["this one, that one"], return_tensors="pt")
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.end_logits, b.end_logits)
