"""Writes accounts.conf of components/fair-share from the base's: the base's
users unchanged, the runner's released work added, the scheduler user added.
Run it after any change to deploy/kustomize/base/nats/config/accounts.conf:

    python deploy/kustomize/components/fair-share/config/make_accounts.py

tests/test_deploy_fair_share.py checks the file is this script's output and
that the grants are what mochi_contracts names."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = HERE.parents[2] / "base" / "nats" / "config" / "accounts.conf"
TARGET = HERE / "accounts.conf"

# A runner in fair mode: the release stream made if absent, its released-jobs durable.
RUNNER_RELEASED = [
    "$JS.API.STREAM.INFO.MOCHI_RELEASED",
    "$JS.API.STREAM.CREATE.MOCHI_RELEASED",
    "$JS.API.CONSUMER.INFO.MOCHI_RELEASED.released-runners",
    "$JS.API.CONSUMER.DURABLE.CREATE.MOCHI_RELEASED.released-runners",
    "$JS.API.CONSUMER.MSG.NEXT.MOCHI_RELEASED.released-runners",
    "$JS.ACK.MOCHI_RELEASED.released-runners.>",
]
SCHEDULER_PUBLISH = [
    "mochi.sched.released.*",
    "mochi.jobs.*.final.failed",
    "$JS.API.STREAM.INFO.MOCHI_JOBS",
    "$JS.API.STREAM.CREATE.MOCHI_JOBS",
    "$JS.API.STREAM.UPDATE.MOCHI_JOBS",
    "$JS.API.STREAM.INFO.MOCHI_RELEASED",
    "$JS.API.STREAM.CREATE.MOCHI_RELEASED",
    "$JS.API.STREAM.UPDATE.MOCHI_RELEASED",
    "$JS.API.STREAM.INFO.MOCHI_RELEASE_DEAD_LETTERS",
    "$JS.API.STREAM.CREATE.MOCHI_RELEASE_DEAD_LETTERS",
    "$JS.API.STREAM.UPDATE.MOCHI_RELEASE_DEAD_LETTERS",
    "$JS.API.CONSUMER.CREATE.MOCHI_JOBS",
    "$JS.FC.MOCHI_JOBS.>",
    "$JS.API.CONSUMER.CREATE.MOCHI_RELEASED",
    "$JS.FC.MOCHI_RELEASED.>",
    "$JS.API.CONSUMER.INFO.MOCHI_RELEASED.released-runners",
    "$JS.API.CONSUMER.INFO.MOCHI_RELEASE_DEAD_LETTERS.release-dead-letters",
    "$JS.API.CONSUMER.DURABLE.CREATE.MOCHI_RELEASE_DEAD_LETTERS.release-dead-letters",
    "$JS.API.CONSUMER.MSG.NEXT.MOCHI_RELEASE_DEAD_LETTERS.release-dead-letters",
    "$JS.ACK.MOCHI_RELEASE_DEAD_LETTERS.release-dead-letters.>",
    "$JS.API.STREAM.MSG.GET.MOCHI_RELEASED",
    "$JS.API.DIRECT.GET.MOCHI_RELEASED",
    "$JS.API.STREAM.INFO.KV_mochi_scheduler_lease",
    "$JS.API.STREAM.CREATE.KV_mochi_scheduler_lease",
    "$JS.API.STREAM.MSG.GET.KV_mochi_scheduler_lease",
    "$KV.mochi_scheduler_lease.>",
    "$JS.API.STREAM.INFO.KV_mochi_scheduler_queue",
    "$JS.API.STREAM.CREATE.KV_mochi_scheduler_queue",
    "$JS.API.STREAM.MSG.GET.KV_mochi_scheduler_queue",
    "$KV.mochi_scheduler_queue.>",
]
HEADER = """# components/fair-share: deploy/kustomize/base/nats/config/accounts.conf plus
# the scheduler user and the runner's released work (MOCHI_SCHEDULING=fair;
# its fifo grants stay, so a runner can be switched back). Made by
# make_accounts.py beside it: do not edit, run it after changing the base's.
"""


def _lines(subjects: list[str], indent: int) -> str:
    return ",\n".join(" " * indent + f'"{s}"' for s in subjects)


def fair_accounts(base: str) -> str:
    runner = '          "user": "runner",'
    admin = '        {\n          "user": "admin",'
    if base.count(runner) != 1 or base.count(admin) != 1:
        raise SystemExit(f"{BASE}: expected one runner and one admin user")
    # The runner's publish allow-list is the first one after its user line.
    at = base.index(runner)
    end = base.index("\n              ]", at)
    fair = base[:end] + ",\n" + _lines(RUNNER_RELEASED, 16) + base[end:]
    scheduler = ('        {\n          "user": "scheduler",\n          "password": $SCHEDULER_PASSWORD,\n'
                 '          "permissions": {\n            "publish": {\n              "allow": [\n'
                 + _lines(SCHEDULER_PUBLISH, 16) + "\n              ]\n            },\n"
                 '            "subscribe": {"allow": ["_INBOX.>"]}\n          }\n        },\n')
    return HEADER + fair.replace(admin, scheduler + admin)


def main() -> int:
    TARGET.write_text(fair_accounts(BASE.read_text()))
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
