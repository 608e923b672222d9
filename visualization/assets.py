"""Put Solara's front-end files in its cache from npm, so the dashboard loads without a CDN.

The Solara server serves its browser files from ``solara.server.settings.assets.proxy_cache_dir``
and fetches what is missing there from cdn.jsdelivr.net; without that CDN the page stays blank.
``python -m visualization.assets`` (run by ``install.sh`` when npm is present) downloads the same
npm packages with ``npm pack`` and unpacks them into the cache; :func:`ensure` does the same when
the dashboard starts. Packages already cached are skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

# the versions solara 1.64's page template, Markdown and widgets ask for; the page template loads
# the Vuetify 2 app with ipyvuetify 1.x (what requirements.txt pins) and the Vuetify 3 app with 3.x
VUETIFY_APPS = {False: "@widgetti/solara-vuetify-app@10.1.1", True: "@widgetti/solara-vuetify3-app@5.2.0"}
COMMON = ("@widgetti/vue-grid-layout@2.3.13-alpha.2", "requirejs@2.3.6", "font-awesome@4.5.0",
          "mermaid@10.8.0", "katex@0.16.9")
CDN_PROBE = "https://cdn.jsdelivr.net/npm/requirejs@2.3.6/package.json"
INSTALL_NPM = "install npm (Debian/Ubuntu: sudo apt-get install npm; or from https://nodejs.org)"


class AssetsUnavailable(RuntimeError):
    """The front-end files are not cached and cannot be fetched; the message is one line saying why."""


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


def fill(packages=None, root: Path | None = None, progress: Callable[[str], None] = lambda package: None
         ) -> list[str]:
    """Download and unpack the missing packages into the cache; returns those added.

    Each package is unpacked beside its final place and then renamed into it, so an interrupted
    download never leaves a package that looks complete. Raises :class:`AssetsUnavailable` when
    npm is missing or fails.
    """
    root = root or cache_dir()
    todo = missing(packages, root)
    npm = shutil.which("npm")
    if todo and npm is None:
        raise AssetsUnavailable(f"npm not found: {INSTALL_NPM}")
    with tempfile.TemporaryDirectory() as scratch:
        for package in todo:
            progress(package)
            result = subprocess.run([npm, "pack", package, "--silent"], cwd=scratch, capture_output=True,
                                    text=True)
            if result.returncode != 0:
                reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
                raise AssetsUnavailable(f"npm pack {package} failed: {reason}")
            unpack(Path(scratch) / result.stdout.strip().splitlines()[-1], root / package)
    return todo


def unpack(archive: Path, target: Path) -> None:
    """Unpack an ``npm pack`` tarball's ``package/`` folder into ``target``, all or nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.startswith("package/"):
                    continue
                member.name = member.name.removeprefix("package/")
                tar.extract(member, staging, filter="data")
        if target.exists():  # a folder without package.json: files Solara fetched one by one
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cdn_reachable(timeout: float = 3.0) -> bool:
    try:
        urllib.request.urlopen(CDN_PROBE, timeout=timeout).close()
    except OSError:
        return False
    return True


def ensure(say: Callable[[str], None] = print) -> None:
    """Make sure the server can deliver its front-end files, saying what it does through ``say``.

    Fills the cache from npm when something is missing. Without npm (or when npm fails) the server
    can still fetch the files from cdn.jsdelivr.net if that answers; otherwise this raises
    :class:`AssetsUnavailable` with a one-line reason and what to install.
    """
    todo = missing()
    if not todo:
        return
    try:
        if shutil.which("npm") is None:
            raise AssetsUnavailable(f"npm not found: {INSTALL_NPM}")
        say(f"dashboard: fetching Solara's front-end files from npm into {cache_dir()} (first start only): "
            f"{len(todo)} packages")
        fill(progress=lambda package: say(f"dashboard:   {package}"))
    except AssetsUnavailable as error:
        if not cdn_reachable():
            raise AssetsUnavailable(f"Solara's front-end files are missing and cdn.jsdelivr.net is "
                                    f"unreachable; {error}, then start the dashboard again") from None
        say(f"dashboard: {error}; the browser will load Solara's front-end files from cdn.jsdelivr.net")
        return
    say("dashboard: front-end files in place")


def main() -> int:
    try:
        added = fill(progress=lambda package: print(f"fetching {package}", flush=True))
    except AssetsUnavailable as error:
        print(f"visualization.assets: {error}", file=sys.stderr)
        return 1
    print(f"solara assets in {cache_dir()}: added {', '.join(added) or 'nothing (all cached)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
