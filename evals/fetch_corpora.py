"""Fetch real document corpora from Debian packages (`apt-get download` + `dpkg -x`) into a local cache.

python -m evals.fetch_corpora [--dest corpora] [python-docs] [debian-faq] [linux-doc]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DEST = Path(__file__).resolve().parent.parent / "corpora"


@dataclass(frozen=True)
class Corpus:
    package: str
    doc_root: str  # inside the extracted package


CORPORA: dict[str, Corpus] = {
    "python-docs": Corpus("python3.11-doc", "usr/share/doc/python3.11/html"),
    "debian-faq": Corpus("debian-faq", "usr/share/doc/debian/FAQ"),
    "linux-doc": Corpus("linux-doc-6.1", "usr/share/doc/linux-doc-6.1/html"),  # ~37 MB download, 190 MB out
}


def _download(package: str, folder: Path) -> Path:
    def attempt() -> bool:
        return (
            subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True).returncode == 0
        )

    if not attempt():
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        if not attempt():
            raise RuntimeError(f"apt-get download {package} failed")
    return next(folder.glob(f"{package}_*.deb"))


def _tidy(tree: Path, root: Path) -> None:
    # dpkg -x keeps symlinks: some dangle (python docs' jquery.js points into /usr/share/javascript), the rest
    # duplicate a sibling (debian FAQ's x.html -> x.en.html) and would be ingested twice. Drop them all.
    for path in sorted(tree.rglob("*"), reverse=True):
        if path.is_symlink():
            path.unlink()
    # Debian gzips large docs (the FAQ's .txt and .pdf): unpack them so loaders can read them.
    for path in root.rglob("*.gz"):
        with gzip.open(path) as src, path.with_suffix("").open("wb") as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()


def fetch(name: str, dest: Path = DEFAULT_DEST) -> Path:
    """The corpus's doc root, downloading and extracting its package first unless already done."""
    corpus = CORPORA[name]
    target = dest / corpus.package
    root = target / corpus.doc_root
    if (target / ".complete").exists():
        return root
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        work = Path(tmp)
        deb = _download(corpus.package, work)
        tree = work / "tree"
        subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True)
        _tidy(tree, tree / corpus.doc_root)
        (tree / ".complete").write_text(deb.name + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tree.rename(target)  # only a complete extraction ever appears under its final name
    if not root.is_dir():
        raise RuntimeError(f"{corpus.package} has no {corpus.doc_root}")
    return root


def python_docs_dir(dest: Path = DEFAULT_DEST) -> Path:
    return fetch("python-docs", dest)


def debian_faq_dir(dest: Path = DEFAULT_DEST) -> Path:
    return fetch("debian-faq", dest)


def copy_html_pages(root: Path, dest: Path, limit: int | None) -> int:
    """The first `limit` HTML pages under root (sorted by path; not the docs' _sources/*.txt), copied to dest at
    the same relative paths, for benchmarks on a slice of a corpus; how many were copied."""
    files = sorted(p for p in root.rglob("*.html") if p.is_file())[:limit]
    for path in files:
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch document corpora from Debian packages.")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="cache folder (default: corpora/)")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(CORPORA)}")
    args = parser.parse_args(argv)
    if unknown := set(args.names) - set(CORPORA):
        parser.error(f"unknown corpus {', '.join(sorted(unknown))}: choose from {', '.join(CORPORA)}")
    for name in args.names or ["python-docs", "debian-faq"]:
        try:
            print(f"{name}: {fetch(name, args.dest)}")
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
