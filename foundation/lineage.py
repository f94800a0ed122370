"""The identity of the code that runs: the git commit lineage tags and image labels record.

Owns: ``git_commit()``. Must not: import anything heavy (the host-side compose driver uses it to
label images, training to tag runs).
"""

from __future__ import annotations

import subprocess

from foundation.settings import REPO_ROOT, get_settings


def git_commit() -> str:
    """HEAD's sha (``-dirty`` when tracked files changed); without a git checkout (a container
    image) the commit the image was built from (``FRAUDLAB_GIT_COMMIT``), else "unknown"."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return get_settings().git_commit or "unknown"
