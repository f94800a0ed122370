"""Git helpers for code-review scenarios: branches made without touching anyone's checkout.

Owns: commits built with plumbing (a temporary index file, never the checkout's index or
working tree), creating and deleting a review branch, temporary detached worktrees under the
lab's work dir, and a candidate-style commit on a branch (for tests).

Must not: commit on, check out or move any ref other than the review branch it is given, or
discard a candidate's uncommitted work without first saving it as a patch under
the lab directory's ``saved/``.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lab.context import ScenarioContext


@dataclass(frozen=True)
class Person:
    name: str
    email: str

    def env(self, when: datetime | None = None) -> dict[str, str]:
        """Author and committer variables for git (both the same person, like a local commit)."""
        env = {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }
        if when is not None:
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S%z")
            env["GIT_AUTHOR_DATE"] = stamp
            env["GIT_COMMITTER_DATE"] = stamp
        return env


@dataclass(frozen=True)
class Worktree:
    path: Path
    head: str | None
    branch: str | None  # full ref, e.g. refs/heads/main; None when detached


def commit_files(
    ctx: ScenarioContext,
    parent: str,
    files: Mapping[str, str],
    message: str,
    author: Person,
    when: datetime | None = None,
) -> str:
    """A commit whose tree is ``parent``'s with ``files`` (path → text) replaced; returns its
    sha. Nothing outside the object database changes: no ref, index or working tree."""
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        ctx.git("read-tree", parent, env=index)
        for path, text in files.items():
            blob = ctx.git("hash-object", "-w", "--stdin", input=text).stdout.strip()
            ctx.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
        tree = ctx.git("write-tree", env=index).stdout.strip()
    return ctx.git(
        "commit-tree", tree, "-p", parent, input=message, env=author.env(when)
    ).stdout.strip()


def branch_tip(ctx: ScenarioContext, branch: str) -> str | None:
    result = ctx.git("rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def create_branch(ctx: ScenarioContext, branch: str, commit: str) -> None:
    """Point a new branch at ``commit``; fails rather than move an existing branch."""
    ctx.git("update-ref", f"refs/heads/{branch}", commit, "0" * 40)


def worktrees(ctx: ScenarioContext) -> list[Worktree]:
    """Every checkout of the repository, the main one first."""
    found: list[Worktree] = []
    fields: dict[str, str] = {}
    listing = ctx.git("worktree", "list", "--porcelain").stdout.splitlines() + [""]
    for line in listing:
        if not line:
            if "worktree" in fields:
                found.append(
                    Worktree(Path(fields["worktree"]), fields.get("HEAD"), fields.get("branch"))
                )
            fields = {}
            continue
        key, _, value = line.partition(" ")
        fields[key] = value
    return found


@contextmanager
def detached_worktree(ctx: ScenarioContext, ref: str) -> Iterator[Path]:
    """A throwaway checkout of ``ref`` (detached, so the branch stays free for the candidate
    to check out), under the lab's work dir; removed afterwards."""
    root = ctx.work_dir / "trees"
    root.mkdir(parents=True, exist_ok=True)
    path = root / secrets.token_hex(4)
    ctx.git("worktree", "add", "--detach", "--quiet", str(path), ref)
    try:
        yield path
    finally:
        ctx.git("worktree", "remove", "--force", str(path), check=False)
        ctx.git("worktree", "prune", check=False)


def remove_lab_worktrees(ctx: ScenarioContext) -> None:
    """Remove checkouts the lab left under its work dir (a verify that was interrupted)."""
    root = (ctx.work_dir / "trees").resolve()
    for tree in worktrees(ctx):
        if tree.path.resolve().is_relative_to(root):
            ctx.git("worktree", "remove", "--force", str(tree.path), check=False)
    ctx.git("worktree", "prune", check=False)


def _save_uncommitted(ctx: ScenarioContext, tree: Path) -> Path | None:
    # never the repository's configured diff programs: it may be the candidate's to configure
    patch = ctx.git(
        "diff", "--no-ext-diff", "--no-textconv", "HEAD", "--binary", cwd=tree, check=False
    ).stdout
    if not patch.strip():
        return None
    saved = ctx.settings.lab_state_dir / "saved"
    saved.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = saved / f"uncommitted-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}.patch"
    path.write_text(patch)
    return path


def delete_branch(ctx: ScenarioContext, branch: str, base: str, restore_to: str) -> list[Path]:
    """Delete ``branch`` and every checkout standing on its history; returns saved patches.

    A checkout standing on the branch (or detached on one of its commits) would otherwise keep
    the flawed code on screen: linked worktrees are removed, and the main checkout goes back to
    ``restore_to`` (the branch or commit it was on before break). Uncommitted changes there are
    saved as a patch first. Untracked files are never touched. ``base`` is the commit the
    branch was made from: commits after it on the branch are the review's own.
    """
    tip = branch_tip(ctx, branch)
    review_commits: set[str] = set()
    if tip is not None:
        review_commits = set(ctx.git("rev-list", f"{base}..{tip}").stdout.split())
    ref = f"refs/heads/{branch}"
    saved: list[Path] = []
    trees = worktrees(ctx)
    main = trees[0].path.resolve() if trees else ctx.repo
    for tree in trees:
        on_review = tree.branch == ref or (tree.branch is None and tree.head in review_commits)
        if not on_review:
            continue
        patch = _save_uncommitted(ctx, tree.path)
        if patch is not None:
            saved.append(patch)
        if tree.path.resolve() == main:
            ctx.git("checkout", "--force", "--quiet", restore_to, cwd=tree.path)
        else:
            ctx.git("worktree", "remove", "--force", str(tree.path), check=False)
    ctx.git("worktree", "prune", check=False)
    if tip is not None:
        ctx.git("branch", "--quiet", "-D", branch)
    return saved


def commit_on_branch(
    ctx: ScenarioContext, branch: str, files: Mapping[str, str], message: str, author: Person
) -> str:
    """Commit ``files`` onto ``branch`` the way a person does — check it out in a worktree,
    write the files, ``git commit`` — and return the new tip. Used by tests to apply a fix."""
    root = ctx.work_dir / "trees"
    root.mkdir(parents=True, exist_ok=True)
    path = root / secrets.token_hex(4)
    ctx.git("worktree", "add", "--quiet", str(path), branch)
    try:
        for name, text in files.items():
            (path / name).write_text(text)
        ctx.git("add", "--", *files, cwd=path)
        ctx.git("commit", "--quiet", "-m", message, cwd=path, env=author.env())
        return ctx.git("rev-parse", "HEAD", cwd=path).stdout.strip()
    finally:
        ctx.git("worktree", "remove", "--force", str(path), check=False)
        ctx.git("worktree", "prune", check=False)
