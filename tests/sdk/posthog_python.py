"""Sends events with the official `posthog` Python SDK to the local stack.

Usage: python3 tests/sdk/posthog_python.py [HOST [RUN_ID]]
       (or SDK_HOST / SDK_RUN_ID in the environment)

HOST is the local stack's base URL, e.g. http://127.0.0.1:3000; RUN_ID tags every event
(`properties.run`) so the caller can find exactly these rows. Driven by
tests/tests/integration/sdk_clients.rs; the pinned version is in requirements.txt.

The SDK is used as a user would, with `sync_mode=True` and `debug=True` so that an upload
failure raises from `capture()`/`set()` instead of being logged and dropped by the
background consumer: any error exits non-zero.
"""

import logging
import os
import sys
import uuid


def arg(index, env, default=None):
    if len(sys.argv) > index and sys.argv[index]:
        return sys.argv[index]
    value = os.environ.get(env, default)
    if not value:
        sys.exit(f"usage: {sys.argv[0]} HOST RUN_ID (or set {env})")
    return value


def main():
    host = arg(1, "SDK_HOST").rstrip("/")
    run = arg(2, "SDK_RUN_ID", str(uuid.uuid4()))

    try:
        from posthog import Posthog
    except ImportError:
        sys.exit("posthog is not installed: run ./scripts/install-sdk-clients.sh")

    errors = []
    client = Posthog(
        project_api_key="phc_local",
        host=host,
        sync_mode=True,
        debug=True,
        max_retries=0,
        timeout=5,
        on_error=lambda error, batch: errors.append(error),
    )
    # `debug=True` is for the re-raising; its per-event DEBUG chatter is not needed.
    logging.getLogger("posthog").setLevel(logging.WARNING)
    distinct_id = f"user-{run}"

    client.capture(
        "sdk_test",
        distinct_id=distinct_id,
        properties={"run": run, "sdk": "posthog-python", "step": 1},
    )
    client.capture(
        "sdk_test",
        distinct_id=distinct_id,
        properties={"run": run, "sdk": "posthog-python", "step": 2, "plan": "pro"},
    )
    # posthog-python 6+ has no identify(): person properties go out as a `$set` event.
    client.set(
        distinct_id=distinct_id,
        properties={"run": run, "email": f"{distinct_id}@example.com"},
    )
    client.flush()
    client.shutdown()

    if errors:
        sys.exit(f"posthog reported errors: {errors!r}")
    print("sent 3 events")


if __name__ == "__main__":
    main()
