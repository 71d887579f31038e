"""Sends events with the official `mixpanel` Python SDK to the local stack.

Usage: python3 tests/sdk/mixpanel_python.py [HOST [RUN_ID]]
       (or SDK_HOST / SDK_RUN_ID in the environment)

HOST is the local stack's base URL, e.g. http://127.0.0.1:3000; RUN_ID tags every event
(`properties.run`) so the caller can find exactly these rows. Driven by
tests/tests/integration/sdk_clients.rs; the pinned version is in requirements.txt.

Three ways a server-side user sends events, each a distinct wire shape:
  1. `Consumer` + `track()`       -> POST /track, form `data=<one JSON object>`
  2. `BufferedConsumer` + `track()` -> POST /track, form `data=<JSON array>`
  3. `import_data()` with the legacy `api_secret` -> POST /import, Basic auth
The SDK raises `MixpanelException` on any failure (unreachable server, a reply that is
not JSON, or `status` != 1), which exits non-zero.
"""

import os
import sys
import time
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
        from mixpanel import BufferedConsumer, Consumer, Mixpanel
    except ImportError:
        sys.exit("mixpanel is not installed: run ./scripts/install-sdk-clients.sh")

    urls = {
        "events_url": f"{host}/track",
        "import_url": f"{host}/import",
        "request_timeout": 5,
    }
    distinct_id = f"user-{run}"

    # 1. One request per event.
    mp = Mixpanel("mp_local", consumer=Consumer(**urls))
    mp.track(distinct_id, "sdk_test", {"run": run, "sdk": "mixpanel-python", "step": 1})

    # 2. Buffered: both events go out in one request on flush().
    buffered = BufferedConsumer(max_size=50, **urls)
    mp_buffered = Mixpanel("mp_local", consumer=buffered)
    mp_buffered.track(distinct_id, "sdk_test", {"run": run, "step": 2, "plan": "pro"})
    mp_buffered.track(distinct_id, "sdk_test", {"run": run, "step": 3})
    buffered.flush()

    # 3. A historical event through /import (a week old, in whole seconds as documented).
    mp.import_data(
        api_key=None,
        distinct_id=distinct_id,
        event_name="sdk_import",
        timestamp=int(time.time()) - 7 * 24 * 3600,
        properties={"run": run, "sdk": "mixpanel-python"},
        api_secret="local-mixpanel-secret",
    )

    print("sent 4 events")


if __name__ == "__main__":
    main()
