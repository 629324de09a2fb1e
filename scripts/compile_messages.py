"""Compile the door screen's message catalogues (device/screen/messages/*/LC_MESSAGES/faceonly.po -> .mo).

    python scripts/compile_messages.py           # after editing a .po file
    python scripts/compile_messages.py --check   # exit 1 when a .mo differs from its .po (CI runs the test)

Needs Babel (the test extra); the terminal reads the .mo files with the standard library's gettext.
"""

from __future__ import annotations

import argparse
import gettext
import io
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.screen.catalogue import DOMAIN, LANGUAGES, MESSAGES  # noqa: E402


def compiled(po: Path) -> bytes:
    with po.open("rb") as fh:
        catalog = read_po(fh, abort_invalid=True)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def messages(mo: bytes) -> dict[str, str]:
    texts = gettext.GNUTranslations(io.BytesIO(mo))
    return {k: v for k, v in texts._catalog.items() if k}  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that every .mo is up to date")
    args = parser.parse_args()
    stale = []
    for language in LANGUAGES:
        folder = MESSAGES / language / "LC_MESSAGES"
        fresh = compiled(folder / f"{DOMAIN}.po")
        mo = folder / f"{DOMAIN}.mo"
        current = mo.read_bytes() if mo.is_file() else b""
        if current and messages(current) == messages(fresh):
            continue
        if args.check:
            stale.append(str(mo.relative_to(ROOT)))
        else:
            mo.write_bytes(fresh)
            print(f"wrote {mo.relative_to(ROOT)}")
    if stale:
        print("stale: " + ", ".join(stale) + " (run python scripts/compile_messages.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
