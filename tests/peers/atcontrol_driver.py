"""Runs one operation of Adafruit's ESP-AT host driver (adafruit-circuitpython-esp-atcontrol,
https://github.com/adafruit/Adafruit_CircuitPython_espATcontrol) against a module on a serial
port, through the driver's public API as its users call it, and prints the result as one JSON
object on stdout.

    atcontrol_driver.py PORT OPERATION [HOST]

PORT is a serial device (/dev/pts/N) or a pyserial URL (socket://127.0.0.1:PORT). On a board
the driver talks to a `busio.UART`; here a thin pyserial adapter stands in for it, offering
exactly what the driver calls on it (read, write, in_waiting, reset_input_buffer, baudrate).
The driver itself is unmodified.

Used by tests/drivers_atcontrol.rs.
"""

import json
import sys
import time

import serial

from adafruit_espatcontrol import adafruit_espatcontrol

# The virtual module's default access point (esp-aws sim).
SECRETS = {"ssid": "esp-aws-sim", "password": "esp-aws-sim"}


class Uart:
    """What the driver uses of `busio.UART`, over pyserial."""

    def __init__(self, port):
        self._serial = serial.serial_for_url(port, baudrate=115200, timeout=1)

    @property
    def baudrate(self):
        return self._serial.baudrate

    @baudrate.setter
    def baudrate(self, rate):
        # A pty or a TCP line has no line speed to change; the module's own AT+UART_CUR
        # answer is what the driver checks (it re-syncs with "AT" afterwards).
        self._serial.baudrate = rate

    @property
    def in_waiting(self):
        return self._serial.in_waiting

    def read(self, nbytes=None):
        return self._serial.read(nbytes if nbytes is not None else self._serial.in_waiting)

    def readline(self):
        return self._serial.readline()

    def write(self, data):
        return self._serial.write(data)

    def reset_input_buffer(self):
        self._serial.reset_input_buffer()


def joined(esp):
    """Joins the access point the way the driver's examples do (`connect`). The module comes
    up already joined to its saved network, and the driver's `remote_AP` then fails on it
    (0.11.7 compares bytes with str: `reply.startswith("+CWJAP:")`), so the link is dropped
    first with the driver's own `disconnect` and joined afresh."""
    esp.begin()
    esp.disconnect()
    esp.connect(SECRETS)
    return esp


def run(esp, op, host):
    if op == "soft_reset":
        return {"reset": esp.soft_reset(), "sync": esp.sync()}
    if op == "version":
        esp.begin()
        return {"version": esp.version, "lines": esp._versionstrings}
    if op == "status":
        esp.begin()
        return {"is_connected": esp.is_connected, "status": esp.status}
    if op == "connect":
        joined(esp)
        return {"is_connected": esp.is_connected, "status": esp.status}
    if op == "local_ip":
        return {"ip": joined(esp).local_ip}
    if op == "remote_ap":
        return {"ap": joined(esp).remote_AP}
    if op == "mode":
        esp.begin()
        return {"mode": esp.mode}
    if op == "nslookup":
        return {"ip": joined(esp).nslookup(host)}
    if op == "ping":
        return {"ms": joined(esp).ping(host)}
    if op == "disconnect":
        joined(esp).disconnect()
        return {"is_connected": esp.is_connected}
    if op == "https_get":
        # The module verifies the server's certificate dates, so its clock must be set first:
        # `connect` configures SNTP when the secrets name a time zone, as the driver's
        # examples do, and the first SNTP answer is awaited with the driver's `sntp_time`.
        esp.soft_reset()
        esp.begin()
        esp.disconnect()
        esp.connect(dict(SECRETS, timezone=0))
        synced_by = time.monotonic() + 30
        while b"1970" in (esp.sntp_time or b"1970") and time.monotonic() < synced_by:
            time.sleep(0.2)
        opened = esp.socket_connect(esp.TYPE_SSL, host, 8443)
        request = (
            f"GET /things/lnu_001/shadow HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ).encode()
        sent = esp.socket_send(request)
        body = bytes(esp.socket_receive(timeout=5))
        status_open = esp.status
        esp.socket_disconnect()
        return {
            "opened": opened,
            "sent": sent,
            "response": body.decode("utf-8", "replace"),
            "status_while_open": status_open,
            "status_after": esp.status,
        }
    if op == "scan":
        esp.begin()
        return {"aps": esp.scan_APs()}
    if op == "autoconnect":
        esp.begin()
        esp.set_autoconnect(True)
        return {"autoconnect": True}
    if op == "tcp_connect":
        joined(esp)
        return {"opened": esp.socket_connect(esp.TYPE_TCP, host, 8443)}
    raise SystemExit(f"unknown operation {op}")


def main():
    port, op = sys.argv[1], sys.argv[2]
    host = sys.argv[3] if len(sys.argv) > 3 else ""
    debug = bool(__import__("os").environ.get("ATCONTROL_DEBUG"))
    esp = adafruit_espatcontrol.ESP_ATcontrol(Uart(port), 115200, debug=debug)
    print(json.dumps(run(esp, op, host)))


if __name__ == "__main__":
    main()
