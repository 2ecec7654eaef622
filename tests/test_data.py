"""Corpora: the persona corpus, user loaders, the prompt sets, and their errors."""
import json

import pytest

from dreamstate.data import PERSONAS, Document, corpus_stats, load_folder, load_jsonl, load_prompts, persona_corpus


def test_persona_corpus_is_deterministic_and_split_by_document():
    a, b = persona_corpus(30, seed=3), persona_corpus(30, seed=3)
    assert [(d.text, d.split) for d in a] == [(d.text, d.split) for d in b]
    assert [d.text for d in persona_corpus(30, seed=4)] != [d.text for d in a]
    assert len(PERSONAS) >= 6 and {"code", "creative", "planning"} <= set(PERSONAS)
    for p in PERSONAS:
        ds = [d for d in a if d.label == p]
        assert len(ds) == 30 and {d.split for d in ds} == {"train", "val", "test"}
        assert len({d.text for d in ds}) == 30, f"{p}: duplicate documents"
    lengths = [len(d.text) for d in a]
    assert max(lengths) > 3 * min(lengths), "documents should vary in length"


def test_persona_corpus_variety():
    rows = {r["persona"]: r for r in corpus_stats(persona_corpus(300, seed=0))}
    for p, r in rows.items():
        assert r["distinct_word_3grams"] > 500, (p, r["distinct_word_3grams"])


def test_arithmetic_answers_are_correct():
    for d in persona_corpus(20, seed=1, personas=["arithmetic"]):
        for line in d.text.strip().splitlines():
            q, ans = line[3:].split(" = ? A: ")
            assert eval(q) == int(ans), line


def test_unknown_persona():
    with pytest.raises(ValueError, match="unknown persona.*poetry"):
        persona_corpus(10, seed=0, personas=["code", "poetry"])


def test_folder_and_jsonl_give_the_same_documents(tmp_path):
    docs = persona_corpus(5, seed=0)
    for d in docs:
        (tmp_path / "f" / d.label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "f" / d.label / f"{d.doc_id}.txt").write_text(d.text)
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d.text, "label": d.label}) + "\n" for d in docs))
    a, b = load_folder(tmp_path / "f"), load_jsonl(tmp_path / "c.jsonl")
    assert all(isinstance(x, Document) for x in a + b)
    assert sorted((x.label, x.text) for x in a) == sorted((x.label, x.text) for x in b)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus folder not found"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty" / "code").mkdir(parents=True)
    with pytest.raises(ValueError, match="no non-empty .txt files"):
        load_folder(tmp_path / "empty")
    (tmp_path / "bad" / "code").mkdir(parents=True)
    (tmp_path / "bad" / "code" / "x.txt").write_bytes(b"\xff\xfe\xfa invalid utf-8")
    with pytest.raises(ValueError, match="cannot read"):
        load_folder(tmp_path / "bad")
    (tmp_path / "c.jsonl").write_text('{"text": "hi"}\n')
    with pytest.raises(ValueError, match="'text' and 'label'"):
        load_jsonl(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        load_jsonl(tmp_path / "d.jsonl")


def test_prompt_sets_have_50_per_persona():
    prompts = load_prompts()
    for p in PERSONAS:
        texts = [d.text for d in prompts if d.label == p]
        assert len(set(texts)) >= 50, p
