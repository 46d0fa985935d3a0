"""`embeddinghub demo`: real sentence embeddings of the Python docs, loaded and searched.

The data (`data/pydocs_demo.npz`, 2 MB) is about 3,000 paragraphs of the Python 3.11 documentation
embedded with all-MiniLM-L6-v2 (384 dims, float16), keyed `<doc path>#<paragraph>`, with
the documentation section (library, tutorial, faq, ...) of each as its partition. Whole
documents are kept so that a paragraph's neighbours include its topical relatives.
`build_data()` made it from the full 30,165-row set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import ingest
from .hub import Hub
from .space import Space

__all__ = ["DATA", "SPACE", "build_data", "run"]

SPACE = "pydocs-demo"
DATA = "pydocs_demo.npz"
ROWS = 3000
MIN_PER_SECTION = 20

# Documents kept whole first, so the searches below have topical neighbours to find.
FEATURED = (
    "library/json", "library/pickle", "library/marshal", "library/shelve", "library/csv",
    "library/re", "howto/regex", "library/itertools", "library/functools",
    "library/collections", "library/heapq", "library/bisect", "library/random",
    "library/math", "library/threading", "library/asyncio-task", "library/subprocess",
    "library/pathlib", "library/os.path", "library/tempfile", "library/zipfile",
    "library/gzip", "library/hashlib", "howto/sorting", "tutorial/datastructures",
    "tutorial/errors", "tutorial/inputoutput", "tutorial/classes", "faq/library",
)

# (title, key, partition to search or None for all): the searches run() shows.
QUERIES: tuple[tuple[str, str, str | None], ...] = (
    ("A paragraph of the heapq docs", "library/heapq#11653", None),
    ("A paragraph of the subprocess docs", "library/subprocess#18413", None),
    ("A paragraph of the sorting HOWTO", "howto/sorting#5524", None),
    ("A paragraph of the regex HOWTO, searched in the library reference only",
     "howto/regex#5330", "library"),
)


def data_path() -> Path:
    return Path(str(resources.files("embeddinghub") / "data" / DATA))


def build_data(source: str | Path, dest: str | Path | None = None, rows: int = ROWS) -> Path:
    """Make the demo file from the full pydocs set (corpus.npy, corpus_ids.txt, corpus_sections.txt).

    Deterministic. Each section gets a share of `rows` in proportion to its size (at least
    MIN_PER_SECTION); the share is filled with whole documents, featured ones first,
    then the rest in a seeded random order.
    """
    src = Path(source)
    out = Path(dest) if dest is not None else data_path()
    vectors = np.load(src / "corpus.npy", mmap_mode="r")
    ids = (src / "corpus_ids.txt").read_text(encoding="utf-8").splitlines()
    sections = (src / "corpus_sections.txt").read_text(encoding="utf-8").splitlines()
    docs: dict[str, list[int]] = {}
    section_of: dict[str, str] = {}
    for i, (key, section) in enumerate(zip(ids, sections, strict=True)):
        doc = key.split("#", 1)[0]
        docs.setdefault(doc, []).append(i)
        section_of[doc] = section
    sizes: dict[str, int] = {}
    for section in sections:
        sizes[section] = sizes.get(section, 0) + 1
    rng = np.random.default_rng(0)
    keep: list[int] = []
    for section in sorted(sizes):
        quota = min(sizes[section], max(MIN_PER_SECTION, round(rows * sizes[section] / len(ids))))
        names = sorted(d for d in docs if section_of[d] == section)
        featured = [d for d in FEATURED if d in names]
        rest = [d for d in names if d not in featured]
        order = featured + [rest[i] for i in rng.permutation(len(rest))]
        taken: list[int] = []
        for doc in order:
            if len(taken) + len(docs[doc]) <= quota:
                taken += docs[doc]
        if len(taken) < quota:  # no whole document fits the rest of the share: cut one
            spare = [i for doc in order for i in docs[doc] if i not in set(taken)]
            taken += spare[: quota - len(taken)]
        keep += taken
    keep.sort()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        np.savez_compressed(
            fh,
            embeddings=np.asarray(vectors[keep], dtype=np.float16),
            keys=np.array([ids[i] for i in keep], dtype=str),
            partitions=np.array([sections[i] for i in keep], dtype=str),
        )
    return out


def run(
    hub: Hub,
    echo: Callable[[str], None] = print,
    table: Callable[[list[dict[str, Any]]], None] | None = None,
    space_name: str = SPACE,
) -> dict[str, Any]:
    """Load the demo data into `space_name` (recreated), index it and print some searches
    with `echo` (lines) and `table` (rows of neighbours; default: one line each).

    Returns what it printed: the row count, timings and each query's neighbours.
    """
    say = echo
    show = table or (lambda found: say("\n".join(f"  {r['key']}  {r['distance']}" for r in found)))
    t0 = time.perf_counter()
    batch = ingest.read(data_path())
    if hub.has_space(space_name):
        hub.delete_space(space_name)
    space = hub.create_space(
        space_name, dims=batch.dims, metric="cosine", dtype="float16",
        description=f"{len(batch)} paragraphs of the Python docs (all-MiniLM-L6-v2): demo data",
    )
    sections = sorted({p for p in batch.partitions or [] if p})
    for section in sections:
        space.create_partition(section)
    space.multiset(batch.keys, batch.vectors, partition=batch.partitions)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    space.create_index(m=16, ef_construction=64)
    t2 = time.perf_counter()
    say(
        f"Loaded {len(batch)} paragraphs of the Python docs into space {space_name!r}"
        f" ({batch.dims} dims, cosine, float16) in {t1 - t0:.1f} s,"
        f" in {len(sections)} partitions (one per docs section);"
        f" built the HNSW index in {t2 - t1:.1f} s."
    )
    section_of = dict(zip(batch.keys, batch.partitions or [], strict=True))
    results = _searches(space, section_of, say, show)
    say("")
    say("Try it yourself:")
    say(f"  embeddinghub space show {space_name}")
    if QUERIES:
        key = QUERIES[0][1]
        say(f"  embeddinghub nn {space_name} --key {key} --key-partition {section_of[key]} -k 10")
    return {"space": space_name, "rows": len(batch), "partitions": sections, "queries": results}


def _searches(
    space: Space,
    section_of: dict[str, str | None],
    say: Callable[[str], None],
    show: Callable[[list[dict[str, Any]]], None],
) -> list[dict[str, Any]]:
    """Run and print the demo's searches; return their neighbours."""
    results: list[dict[str, Any]] = []
    for title, key, partition in QUERIES:
        started = time.perf_counter()
        # The key lives in its section's partition; the search may span every partition.
        hits = space.nearest_neighbors(5, key=key, key_partition=section_of[key], partition=partition)
        ms = (time.perf_counter() - started) * 1000
        scope = f"partition {partition!r}" if partition else "all partitions"
        say("")
        say(f"{title}: neighbours of {key!r} in {scope} ({ms:.0f} ms)")
        found = [{"key": h.key, "section": h.partition, "distance": round(h.distance, 4)} for h in hits]
        show(found)
        results.append({"key": key, "partition": partition, "neighbours": found})
    return results
