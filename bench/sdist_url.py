"""Prints the URL of a source distribution on the package index pip is configured with.

    python3 bench/sdist_url.py NAME VERSION

The index is the one pip would use: PIP_INDEX_URL, else `pip config get global.index-url`,
else pip's own default. Relative links on the project page (as mirrors write them) are resolved
against the page. Exits non-zero naming the page when the file is not listed.
"""

import html
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request


def index_url():
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    configured = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if configured:
        return configured
    from pip._internal.models.index import PyPI

    return PyPI.simple_url


def main():
    name, version = sys.argv[1], sys.argv[2]
    project = re.sub(r"[-_.]+", "-", name).lower()
    page = index_url().rstrip("/") + f"/{project}/"
    text = urllib.request.urlopen(page, timeout=60).read().decode()
    wanted = f"{project.replace('-', '_')}-{version}.tar.gz"
    for href in re.findall(r'href="([^"]+)"', text):
        link = html.unescape(href).split("#")[0]
        if link.rsplit("/", 1)[-1] == wanted:
            print(urllib.parse.urljoin(page, link))
            return
    sys.exit(f"{wanted} is not listed on {page}")


if __name__ == "__main__":
    main()
