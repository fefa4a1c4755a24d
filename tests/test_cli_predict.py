"""``lpaf predict`` on tiny dense and low-rank models against an unbatched forward of
each example, the metrics against scikit-learn, and its errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score

from lpaf.cli import main
from lpaf.compressed import save_compressed
from lpaf.factorize.layer import swap_to_lowrank
from lpaf.modeling import minilm_path

QUERY0 = "bert.encoder.layer.0.attention.self.query"


def _one_by_one(model, tokenizer, *texts) -> np.ndarray:
    """Logits of each example alone (no padding): a second implementation."""
    out = []
    with torch.no_grad():
        for parts in zip(*texts, strict=True):
            enc = tokenizer(*parts, truncation=True, max_length=128, return_tensors="pt")
            out.append(model(**enc).logits[0].numpy())
    return np.stack(out)


@pytest.fixture
def sst2_rows(repo):
    lines = (repo / "resources/glue/SST-2/dev.tsv").read_text().splitlines()
    return lines[:25]  # header + 24 examples


def test_lowrank_sst2_with_labels(tiny_bert, minilm_tokenizer, sst2_rows, tmp_path, capsys):
    model = tiny_bert(vocab_size=minilm_tokenizer.vocab_size).eval()
    swap_to_lowrank(model, {QUERY0: 4})
    save_compressed(model, minilm_tokenizer, tmp_path / "model", metadata={"task": "SST-2"})
    file = tmp_path / "in.tsv"
    file.write_text("\n".join(sst2_rows) + "\n")
    code = main(["predict", str(tmp_path / "model"), str(file), "--out", str(tmp_path / "p.tsv")])
    _, err = capsys.readouterr()
    assert code == 0
    table = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    sentences = [line.split("\t")[0] for line in sst2_rows[1:]]
    labels = [int(line.split("\t")[1]) for line in sst2_rows[1:]]
    logits = _one_by_one(model, minilm_tokenizer, sentences)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert list(table["index"]) == list(range(24))
    assert list(table["prediction"]) == [("negative", "positive")[i] for i in logits.argmax(1)]
    assert np.allclose(table[["prob_negative", "prob_positive"]], probs, atol=1e-5)
    accuracy = accuracy_score(labels, logits.argmax(1))
    assert f"accuracy {accuracy:.4f}" in err


def test_dense_stsb_text_only_with_task_flag(tiny_bert, minilm_tokenizer, tmp_path, capsys):
    model = tiny_bert(num_labels=1, vocab_size=minilm_tokenizer.vocab_size).eval()
    model.save_pretrained(tmp_path / "model")
    minilm_tokenizer.save_pretrained(tmp_path / "model")
    pairs = [("A man is dancing.", "A man dances."), ("A cat sleeps.", "Stocks fell today.")]
    file = tmp_path / "in.tsv"
    file.write_text("sentence1\tsentence2\n" + "".join(f"{a}\t{b}\n" for a, b in pairs))
    code = main(["predict", str(tmp_path / "model"), str(file), "--task", "stsb"])
    out, err = capsys.readouterr()
    assert code == 0 and "metrics" not in err  # no label column, no metrics
    table = pd.read_csv(io.StringIO(out), sep="\t")
    expected = _one_by_one(model, minilm_tokenizer, *zip(*pairs, strict=True))[:, 0]
    assert list(table.columns) == ["index", "prediction"]
    assert np.allclose(table["prediction"], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", [], "not a directory"),
        ("dense", [], "no task recorded"),
        ("dense", ["--task", "SST-3"], "Unknown task 'SST-3'"),
        ("dense", ["--task", "MRPC"], "needs a column 'sentence1' (or '#1 String')"),
        ("sst2-notokenizer", [], "no tokenizer could be loaded"),
        ("sst2-minilm-tokenizer", [], "not the model's tokenizer"),  # vocab 100 < 30522
    ],
)
def test_errors_name_the_problem(setup, args, message, tiny_bert, tmp_path, capsys):
    model_dir = tmp_path / "model"
    if setup != "none":
        tiny_bert().save_pretrained(model_dir)
    if setup.startswith("sst2"):
        (tmp_path / "metrics.json").write_text(json.dumps({"task": "SST-2"}))
    if setup == "sst2-minilm-tokenizer":
        args = ["--tokenizer", str(minilm_path())]
    file = tmp_path / "in.tsv"
    file.write_text("sentence\tlabel\nfine .\t1\n")
    code = main(["predict", str(model_dir), str(file), *args])
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err, err


def _squad_file(path, records) -> None:
    paragraphs = [
        {
            "context": r["context"],
            "qas": [
                {
                    "id": r["id"],
                    "question": r["question"],
                    "answers": [
                        {"text": t, "answer_start": s}
                        for t, s in zip(
                            r["answers"]["text"], r["answers"]["answer_start"], strict=True
                        )
                    ],
                }
            ],
        }
        for r in records
    ]
    path.write_text(
        json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]})
    )


def test_squad_json_gives_one_answer_per_question(minilm_tokenizer, tmp_path, capsys):
    from lpaf.modeling import load_for_task
    from lpaf.qa.evaluate import predict_answers
    from lpaf.qa.metrics import squad_metrics
    from lpaf.tasks import get_task

    from .qa.test_squad_evaluate import RECORDS

    model, _ = load_for_task("tiny-bert", get_task("SQuAD"), seed=0)
    model.eval().save_pretrained(tmp_path / "model")
    minilm_tokenizer.save_pretrained(tmp_path / "model")
    _squad_file(tmp_path / "dev.json", RECORDS)
    args = ["predict", str(tmp_path / "model"), str(tmp_path / "dev.json"), "--task", "SQuAD"]
    code = main([*args, "--max-seq-length", "32", "--out", str(tmp_path / "p.tsv")])
    _, err = capsys.readouterr()
    assert code == 0
    table = pd.read_csv(tmp_path / "p.tsv", sep="\t", keep_default_na=False)
    expected = predict_answers(model, minilm_tokenizer, RECORDS, 32, 16)
    assert dict(zip(table["id"], table["prediction"], strict=True)) == expected
    refs = {r["id"]: r["answers"]["text"] for r in RECORDS}
    assert f"f1 {squad_metrics(expected, refs)['f1']:.4f}" in err
    # a classifier cannot answer, and a QA model needs the SQuAD task
    code = main(["predict", str(tmp_path / "model"), str(tmp_path / "dev.json"), "--task", "SST-2"])
    assert code == 2 and "question-answering model" in capsys.readouterr().err
