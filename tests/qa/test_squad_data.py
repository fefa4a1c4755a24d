"""SQuAD JSON reading (shape errors, answers whose offset does not match), and the
split by article on the real dev file."""

from __future__ import annotations

import json

import pytest

from lpaf.qa.data import SquadFormatError, read_squad_json, split_by_article


def _file(tmp_path, data):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


def test_records_and_a_skipped_answer(tmp_path):
    context = "Denver beat Carolina in Super Bowl 50."
    data = [
        {
            "title": "SB",
            "paragraphs": [
                {
                    "context": context,
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Who won?",
                            "answers": [
                                {"answer_start": 0, "text": "Denver"},
                                {"answer_start": 3, "text": "Denver"},  # wrong offset
                            ],
                        },
                        {
                            "id": "q2",
                            "question": "Who lost?",
                            "answers": [{"answer_start": 5, "text": "Carolina"}],  # at 12
                        },
                    ],
                }
            ],
        }
    ]
    records, report = read_squad_json(_file(tmp_path, data))
    assert records == [
        {
            "id": "q1",
            "title": "SB",
            "context": context,
            "question": "Who won?",
            "answers": {"text": ["Denver"], "answer_start": [0]},
        }
    ]
    assert (report.skipped_answers, report.skipped_questions, report.questions) == (2, 1, 1)
    assert report.examples == ["q1", "q2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "the top level should be a dict"),
        ('{"data": {}}', "'data' should be a list"),
        ('{"data": [{"title": "t"}]}', r"data\[0\].paragraphs should be a list"),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x", "question": "q",'
            ' "answers": [{"text": "c", "answer_start": "0"}]}]}]}]}',
            r"qas\[0\].answers\[0\].answer_start should be a int",
        ),
        ("{not json", "not JSON"),
    ],
)
def test_not_squad_shaped_is_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SquadFormatError, match=message):
        read_squad_json(path)


def test_split_by_article_on_the_dev_file(repo):
    records, report = read_squad_json(repo / "resources/squad/dev-v1.1.json")
    assert report.articles == 48 and report.questions == len(records)
    train, dev, record = split_by_article(records, dev_articles=10, seed=0)
    assert len(train) + len(dev) == len(records)
    train_titles = {r["title"] for r in train}
    dev_titles = {r["title"] for r in dev}
    assert len(dev_titles) == 10 and len(train_titles) == 38
    assert not train_titles & dev_titles
    assert not {r["context"] for r in train} & {r["context"] for r in dev}
    assert record["dev_articles"] == sorted(dev_titles)
    again = split_by_article(records, dev_articles=10, seed=0)[2]
    assert again == record  # seeded
    assert split_by_article(records, dev_articles=10, seed=1)[2] != record
    with pytest.raises(ValueError, match="between 1 and 47"):
        split_by_article(records, dev_articles=48, seed=0)
