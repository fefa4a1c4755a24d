"""Stage 6's evaluation (lpaf.evaluate.evaluation) on a tiny BERT and a small tokenized
split: predictions against the model's own forward pass, the predictions table and
metrics against closed forms, and the latency record."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from lpaf.evaluate import evaluate_split, measure_latency, predict
from lpaf.tasks import get_task

ROWS, LENGTH = 10, 12


def split(random_batch, labels) -> datasets.Dataset:
    """A tokenized split as lpaf.data.tokenize makes it (ids, mask, labels, idx)."""
    batch = random_batch(5, size=ROWS, length=LENGTH, labels=False)
    return datasets.Dataset.from_dict(
        {
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
            "labels": labels,
            "idx": list(range(100, 100 + ROWS)),
        }
    )


def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Stacks the model's columns (drops idx, as lpaf.data.collator does)."""
    return {key: torch.tensor([row[key] for row in rows]) for key in rows[0] if key != "idx"}


def direct_logits(model, dataset) -> torch.Tensor:
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(dataset["input_ids"]),
            attention_mask=torch.tensor(dataset["attention_mask"]),
        ).logits


@pytest.fixture
def classification(tiny_bert, random_batch):
    labels = [0, 1, 1, 0, 1, 1, 1, 0, 0, 1]
    return tiny_bert(3, num_labels=2), split(random_batch, labels)


@pytest.mark.parametrize("batch_size", [1, 3, 128])
def test_predict_is_the_models_forward_pass_in_dataset_order(classification, batch_size):
    model, dataset = classification
    model.train()
    logits = predict(model, dataset, collate, batch_size=batch_size)
    assert model.training  # mode restored
    assert isinstance(logits, np.ndarray) and logits.dtype == np.float32
    assert logits.shape == (ROWS, 2)
    model.eval()
    np.testing.assert_allclose(logits, direct_logits(model, dataset).numpy(), atol=1e-5)


def test_classification_table_and_metrics(classification):
    model, dataset = classification
    task = get_task("MRPC")
    metrics, table = evaluate_split(model, dataset, collate, task, batch_size=4)
    logits = direct_logits(model.eval(), dataset).numpy()
    labels = np.array(dataset["labels"])
    pred = logits.argmax(1)
    assert table["idx"].tolist() == list(range(100, 100 + ROWS))
    assert table["label"].tolist() == labels.tolist()
    assert table["prediction"].tolist() == pred.tolist()
    assert table["predicted_label"].tolist() == [task.label_names[i] for i in pred]
    for j, name in enumerate(task.label_names):
        np.testing.assert_allclose(table[f"logit_{name}"], logits[:, j], atol=1e-5)
    tp = int(((pred == 1) & (labels == 1)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    assert metrics["accuracy"] == pytest.approx((pred == labels).mean())
    assert metrics["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    assert metrics["main"] == metrics["f1"]  # MRPC's main metric


def test_regression_table_and_metrics(tiny_bert, random_batch):
    scores = [0.5, 4.0, 2.5, 1.0, 3.5, 5.0, 0.0, 2.0, 4.5, 3.0]
    model, dataset = tiny_bert(4, num_labels=1), split(random_batch, scores)
    metrics, table = evaluate_split(model, dataset, collate, get_task("STS-B"), batch_size=4)
    predictions = direct_logits(model.eval(), dataset).numpy().reshape(-1)
    np.testing.assert_allclose(table["prediction"], predictions, atol=1e-5)
    assert "predicted_label" not in table
    assert metrics["pearson"] == pytest.approx(np.corrcoef(predictions, scores)[0, 1], abs=1e-5)
    assert metrics["main"] == metrics["pearson"]


def test_latency_record(tiny_bert):
    model = tiny_bert()
    result = measure_latency(model, batch_sizes=(1, 2), seq_length=8, warmup=1, repeats=2)
    assert set(result) == {
        "latency_ms_bs1",
        "latency_ms_bs2",
        "latency_seq_length",
        "latency_threads",
        "latency_allocator",
    }
    assert result["latency_ms_bs1"] > 0 and result["latency_ms_bs2"] > 0
    import platform

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert result["latency_allocator"] == ("tuned" if glibc else "default")
    assert result["latency_seq_length"] == 8
    assert result["latency_threads"] == torch.get_num_threads()
    assert not model.training  # measured in eval mode
