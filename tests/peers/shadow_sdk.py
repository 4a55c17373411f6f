"""AWS's device SDK for Python (awsiotsdk, awscrt underneath) against an MQTT endpoint:
the classic and one named shadow of THING, through `awsiot.iotshadow.IotShadowClient`.

For each shadow: get (rejected, 404), update desired with a clientToken (accepted, delta,
documents), get (accepted), update with a stale version (rejected, 409). Prints one JSON
object describing what the SDK delivered; exits 1 with the reason on stderr when something
does not arrive. Server verification stays on: the endpoint's certificate must chain to
--ca and name --host.

usage: shadow_sdk.py --host H --port P --cert C --key K --ca A --thing T --shadow S
"""

import argparse
import json
import queue
import sys

from awscrt import mqtt
from awsiot import iotshadow, mqtt_connection_builder

WAIT = 30


def main():
    ap = argparse.ArgumentParser()
    for name in ("host", "cert", "key", "ca", "thing", "shadow"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()

    conn = mqtt_connection_builder.mtls_from_path(
        endpoint=args.host,
        port=args.port,
        cert_filepath=args.cert,
        pri_key_filepath=args.key,
        ca_filepath=args.ca,
        client_id=args.thing,
        clean_session=True,
        keep_alive_secs=30,
    )
    conn.connect().result(WAIT)
    client = iotshadow.IotShadowClient(conn)
    qos = mqtt.QoS.AT_LEAST_ONCE
    report = {}
    for named in (False, True):
        events = queue.Queue()

        def on(kind):
            return lambda response: events.put((kind, response))

        t = args.thing
        s = args.shadow
        if named:
            subs = [
                client.subscribe_to_get_named_shadow_accepted(
                    iotshadow.GetNamedShadowSubscriptionRequest(thing_name=t, shadow_name=s), qos, on("get_accepted")),
                client.subscribe_to_get_named_shadow_rejected(
                    iotshadow.GetNamedShadowSubscriptionRequest(thing_name=t, shadow_name=s), qos, on("get_rejected")),
                client.subscribe_to_update_named_shadow_accepted(
                    iotshadow.UpdateNamedShadowSubscriptionRequest(thing_name=t, shadow_name=s), qos, on("update_accepted")),
                client.subscribe_to_update_named_shadow_rejected(
                    iotshadow.UpdateNamedShadowSubscriptionRequest(thing_name=t, shadow_name=s), qos, on("update_rejected")),
                client.subscribe_to_named_shadow_delta_updated_events(
                    iotshadow.NamedShadowDeltaUpdatedSubscriptionRequest(thing_name=t, shadow_name=s), qos, on("delta")),
                client.subscribe_to_named_shadow_updated_events(
                    iotshadow.NamedShadowUpdatedSubscriptionRequest(thing_name=t, shadow_name=s), qos, on("documents")),
            ]
        else:
            subs = [
                client.subscribe_to_get_shadow_accepted(
                    iotshadow.GetShadowSubscriptionRequest(thing_name=t), qos, on("get_accepted")),
                client.subscribe_to_get_shadow_rejected(
                    iotshadow.GetShadowSubscriptionRequest(thing_name=t), qos, on("get_rejected")),
                client.subscribe_to_update_shadow_accepted(
                    iotshadow.UpdateShadowSubscriptionRequest(thing_name=t), qos, on("update_accepted")),
                client.subscribe_to_update_shadow_rejected(
                    iotshadow.UpdateShadowSubscriptionRequest(thing_name=t), qos, on("update_rejected")),
                client.subscribe_to_shadow_delta_updated_events(
                    iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=t), qos, on("delta")),
                client.subscribe_to_shadow_updated_events(
                    iotshadow.ShadowUpdatedSubscriptionRequest(thing_name=t), qos, on("documents")),
            ]
        for future, _topic in subs:
            future.result(WAIT)

        def get(token):
            if named:
                req = iotshadow.GetNamedShadowRequest(thing_name=t, shadow_name=s, client_token=token)
                client.publish_get_named_shadow(req, qos).result(WAIT)
            else:
                client.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=t, client_token=token), qos).result(WAIT)

        def update(desired, token, version=None):
            state = iotshadow.ShadowState(desired=desired)
            if named:
                req = iotshadow.UpdateNamedShadowRequest(
                    thing_name=t, shadow_name=s, state=state, client_token=token, version=version)
                client.publish_update_named_shadow(req, qos).result(WAIT)
            else:
                req = iotshadow.UpdateShadowRequest(thing_name=t, state=state, client_token=token, version=version)
                client.publish_update_shadow(req, qos).result(WAIT)

        def take(expected):
            """The next events until all kinds in `expected` arrived; any other is an error."""
            got = {}
            while set(got) != set(expected):
                try:
                    kind, response = events.get(timeout=WAIT)
                except queue.Empty:
                    raise SystemExit(f"waiting for {sorted(set(expected) - set(got))}: nothing came")
                if kind not in expected or kind in got:
                    raise SystemExit(f"unexpected {kind}: {response}")
                got[kind] = response
            return got

        r = {}
        get("g1")
        e = take(["get_rejected"])
        r["get_missing"] = {"code": e["get_rejected"].code, "message": e["get_rejected"].message,
                            "token": e["get_rejected"].client_token}

        update({"color": "red"}, "u1")
        e = take(["update_accepted", "delta", "documents"])
        acc, delta, docs = e["update_accepted"], e["delta"], e["documents"]
        r["update"] = {"version": acc.version, "token": acc.client_token, "desired": acc.state.desired}
        r["delta"] = {"version": delta.version, "state": delta.state, "token": delta.client_token,
                      "metadata_keys": sorted((delta.metadata or {}).keys())}
        r["documents"] = {"previous": None if docs.previous is None else docs.previous.version,
                          "current_version": docs.current.version,
                          "current_desired": docs.current.state.desired}

        get("g2")
        e = take(["get_accepted"])["get_accepted"]
        r["get"] = {"version": e.version, "desired": e.state.desired, "delta": e.state.delta,
                    "token": e.client_token}

        update({"color": "blue"}, "u2", version=99)
        e = take(["update_rejected"])["update_rejected"]
        r["conflict"] = {"code": e.code, "message": e.message, "token": e.client_token}

        report["named" if named else "classic"] = r
    conn.disconnect().result(WAIT)
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the reason goes to the Rust test
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
