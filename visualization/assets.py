"""Fill Solara's front-end cache from npm, for machines that cannot reach cdn.jsdelivr.net.

The Solara server fetches its browser files from the jsDelivr CDN on first use and keeps
them in ``solara.server.settings.assets.proxy_cache_dir``. ``python -m visualization.assets``
downloads the same npm packages with ``npm pack`` and unpacks them there, so the
dashboard loads offline. Packages already cached are skipped.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# the versions solara 1.64's page template, Markdown and widgets ask for; the page template loads
# the Vuetify 2 app with ipyvuetify 1.x (what requirements.txt pins) and the Vuetify 3 app with 3.x
VUETIFY_APPS = {False: "@widgetti/solara-vuetify-app@10.1.1", True: "@widgetti/solara-vuetify3-app@5.2.0"}
COMMON = ("@widgetti/vue-grid-layout@2.3.13-alpha.2", "requirejs@2.3.6", "font-awesome@4.5.0",
          "mermaid@10.8.0", "katex@0.16.9")


def needed() -> tuple[str, ...]:
    """The npm packages the installed solara and ipyvuetify load from the CDN."""
    from solara.util import IPYVUETIFY_V3
    return (VUETIFY_APPS[bool(IPYVUETIFY_V3)], *COMMON)


def cache_dir() -> Path:
    from solara.server.settings import assets
    return Path(assets.proxy_cache_dir)


def missing(packages=None, root: Path | None = None) -> list[str]:
    """Packages not yet in the cache."""
    root = root or cache_dir()
    packages = needed() if packages is None else packages
    return [package for package in packages if not (root / package / "package.json").exists()]


def fill(packages=None, root: Path | None = None) -> list[str]:
    """Download and unpack the missing packages into the cache; returns those added."""
    root = root or cache_dir()
    todo = missing(packages, root)
    with tempfile.TemporaryDirectory() as scratch:
        for package in todo:
            result = subprocess.run(["npm", "pack", package, "--silent"], cwd=scratch, capture_output=True,
                                    text=True, check=True)
            archive = Path(scratch) / result.stdout.strip().splitlines()[-1]
            target = root / package
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    if not member.isfile() or not member.name.startswith("package/"):
                        continue
                    member.name = member.name.removeprefix("package/")
                    tar.extract(member, target, filter="data")
    return todo


if __name__ == "__main__":
    added = fill()
    print(f"solara assets in {cache_dir()}: added {', '.join(added) or 'nothing (all cached)'}")
    sys.exit(0)
