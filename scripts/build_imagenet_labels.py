"""Write rex_stream/data/imagenet-labels.txt: ImageNet's 1000 class names, one per line, in
class-index order, read from a torchvision wheel or installation (its ``models/_meta.py``).

Usage: ``python scripts/build_imagenet_labels.py [torchvision-….whl]`` (no argument: the
installed torchvision). Nothing is downloaded at run time; the file ships with the package.
"""

from __future__ import annotations

import ast
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "rex_stream" / "data" / "imagenet-labels.txt"
META = "torchvision/models/_meta.py"


def categories(source: str) -> list[str]:
    """The ``_IMAGENET_CATEGORIES`` list of a torchvision ``_meta.py``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_IMAGENET_CATEGORIES" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise SystemExit(f"no _IMAGENET_CATEGORIES in {META}")


def main() -> None:
    """Read the names, check there are 1000, write them."""
    if len(sys.argv) > 1:
        with zipfile.ZipFile(sys.argv[1]) as wheel:
            source = wheel.read(META).decode("utf-8")
    else:
        import importlib.util

        spec = importlib.util.find_spec("torchvision")
        if spec is None or spec.origin is None:
            raise SystemExit("torchvision is not installed: pass a torchvision wheel")
        source = (Path(spec.origin).parent / "models" / "_meta.py").read_text("utf-8")
    names = categories(source)
    if len(names) != 1000:
        raise SystemExit(f"expected 1000 ImageNet names, found {len(names)}")
    OUT.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} names to {OUT}")


if __name__ == "__main__":
    main()
