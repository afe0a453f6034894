"""`make deploy` as a user runs it, against a stand-in `gcloud` that records what it is asked: the user's
settings reach Cloud Build, the image tag is the commit, and uncommitted changes are refused or tagged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tollgate.topology import ROOT

FAKE_GCLOUD = """#!/bin/sh
echo "$@" >> "$GCLOUD_LOG"
case "$*" in
  *"builds submit"*)
    if [ -f terraform/environments/production/deploy.auto.tfvars ]; then
      echo "tfvars: $(cat terraform/environments/production/deploy.auto.tfvars)" >> "$GCLOUD_LOG"; fi
    grep -q 'deploy.auto.tfvars' .gcloudignore && echo "gcloudignore lets it through" >> "$GCLOUD_LOG";;
esac
exit 0
"""


@pytest.fixture()
def checkout(tmp_path):
    """A clean clone of the repository's HEAD with a stand-in gcloud on the PATH."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GCLOUD_LOG": str(log)}
    return clone, env, log


def deploy(clone: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "deploy", "PROJECT=my-project", *args], cwd=clone,
                          env=env, capture_output=True, text=True, timeout=60)


def test_deploy_carries_the_named_settings_file_and_tags_the_commit(checkout, tmp_path):
    clone, env, log = checkout
    settings = tmp_path / "prod.tfvars"
    settings.write_text('reviewers = ["user:ada@example.com"]\n')
    done = deploy(clone, env, f"TFVARS={settings}")
    assert done.returncode == 0, done.stdout + done.stderr
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    calls = log.read_text()
    assert f"_IMAGE_TAG={commit} " in calls + " " and "-dirty" not in calls
    assert 'tfvars: reviewers = ["user:ada@example.com"]' in calls and "gcloudignore lets it through" in calls
    assert not (clone / "terraform/environments/production/deploy.auto.tfvars").exists()   # removed afterwards


def test_deploy_without_settings_says_the_defaults_apply(checkout):
    clone, env, log = checkout
    done = deploy(clone, env)
    assert done.returncode == 0 and "terraform's defaults apply" in done.stdout
    assert "tfvars:" not in log.read_text()


def test_a_dirty_tree_is_refused_or_tagged_dirty(checkout):
    clone, env, log = checkout
    with (clone / "README.md").open("a") as fh:
        fh.write("\nan uncommitted change\n")
    refused = deploy(clone, env)
    assert refused.returncode != 0 and "uncommitted changes" in refused.stdout + refused.stderr
    assert not log.exists() or "builds submit" not in log.read_text()
    allowed = deploy(clone, env, "ALLOW_DIRTY=1")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "-dirty" in log.read_text()
