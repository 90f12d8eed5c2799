"""Regenerate the committed gRPC stubs from proto/externalscaler.proto, byte for byte the same every time.

Usage: `uv run python -m kedascaler.proto.generate [--out DIR]` (default: this package's folder).
protoc writes `import externalscaler_pb2` in the grpc stub, which only works from the stub's own folder;
the rewrite below makes it an absolute import of this package, so the stubs import from anywhere.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PACKAGE = "kedascaler.proto"
STEM = "externalscaler"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_FILE = REPO_ROOT / "proto" / f"{STEM}.proto"
PACKAGE_DIR = Path(__file__).resolve().parent
OUTPUTS = (f"{STEM}_pb2.py", f"{STEM}_pb2.pyi", f"{STEM}_pb2_grpc.py")


def _fix_imports(name: str, text: str) -> str:
    """Make the generated modules import each other through the package, and name their own module fully."""
    if name.endswith("_pb2_grpc.py"):
        text, n = re.subn(
            rf"^import {STEM}_pb2 as {STEM}__pb2$",
            f"from {PACKAGE} import {STEM}_pb2 as {STEM}__pb2",
            text,
            flags=re.MULTILINE,
        )
        if n != 1:
            raise RuntimeError(f"expected one 'import {STEM}_pb2' line in {name}, found {n}")
    if name.endswith("_pb2.py"):
        text = text.replace(f"'{STEM}_pb2', _globals", f"'{PACKAGE}.{STEM}_pb2', _globals")
    return text


def generate(out_dir: Path, proto_file: Path = PROTO_FILE) -> list[Path]:
    """Run grpc_tools.protoc on the proto into out_dir and return the files written."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={proto_file.parent}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            proto_file.name,
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}: {' '.join(args)}")
        written = []
        for name in OUTPUTS:
            text = (Path(tmp) / name).read_text(encoding="utf-8")
            target = out_dir / name
            target.write_text(_fix_imports(name, text), encoding="utf-8")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="folder to write the stubs into")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
