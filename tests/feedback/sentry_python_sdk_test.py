#!/usr/bin/python3
"""Crash reports from Debian's python3-sentry-sdk (1.9.10), unmodified.

Starts a real loomd on loopback, makes a DSN with `loom dsn create`, runs a
small app twice (two users) that dies of the same uncaught ZeroDivisionError,
and checks through loomd's API that the crash is one feedback item with two
occurrences and two users, the app's frames with their source lines, and
nothing of the users' data. This SDK gzips what it sends. Exit 77 (ctest:
skipped) when sentry_sdk is not installed, except under CI=true.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import sentry_sdk  # noqa: F401  (the app below imports it; checked here)
except ImportError:
    print("SKIPPED: python3-sentry-sdk is not installed (./scripts/setup.sh --tests installs it)")
    sys.exit(1 if os.environ.get("CI") == "true" else 77)

BIN = os.environ["LOOM_BIN_DIR"]

APP = '''
import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release="stats@0.3.1", environment="test")
sentry_sdk.set_user({"id": os.environ["APP_USER"], "email": os.environ["APP_USER"] + "@mail.test"})
sentry_sdk.add_breadcrumb(category="stats", message="loading scores for " + os.environ["APP_USER"] + "@mail.test")


def mean(xs):
    return sum(xs) / len(xs)


def report(scores):
    return "mean: %.2f" % mean(scores)


print(report([]))
'''

passed = 0


def check(cond, what, detail=""):
    global passed
    if not cond:
        raise AssertionError("%s: %s" % (what, detail))
    passed += 1
    print("ok - " + what)


def main():
    tmp = tempfile.mkdtemp(prefix="loom-pysdk-")
    data = os.path.join(tmp, "data")
    admin = subprocess.check_output([os.path.join(BIN, "loom"), "token", "bootstrap", "--data-dir", data],
                                    text=True, stderr=subprocess.DEVNULL).strip()
    # Its log goes to a file: a pipe nobody reads would stop it once full.
    log_path = os.path.join(tmp, "loomd.log")
    log = open(log_path, "w")
    loomd = subprocess.Popen([os.path.join(BIN, "loomd"), "--data-dir", data, "--listen", "127.0.0.1:0",
                              "--set", "agents=0"], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = None
        deadline = time.time() + 20
        seen = ""
        while time.time() < deadline and url is None:
            with open(log_path) as f:
                seen = f.read()
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", seen)
            if m:
                url = m.group(1)
            else:
                time.sleep(0.05)
        check(url is not None, "loomd started", seen)
        dsn = subprocess.check_output([os.path.join(BIN, "loom"), "--server", url, "--token", admin, "dsn",
                                       "create", "--repo", "stats"], text=True, stderr=subprocess.DEVNULL).strip()
        app = os.path.join(tmp, "stats_app.py")
        with open(app, "w") as f:
            f.write(APP)
        for user in ("user-ann", "user-ben"):
            r = subprocess.run([sys.executable, app], env={**os.environ, "SENTRY_DSN": dsn, "APP_USER": user},
                               capture_output=True, text=True, timeout=60)
            check(r.returncode != 0 and "ZeroDivisionError" in r.stderr,
                  "the app of %s died of its uncaught ZeroDivisionError" % user, r.stderr[-400:])

        def items():
            req = urllib.request.Request(url + "/v1/feedback", headers={"Authorization": "Bearer " + admin})
            return json.load(urllib.request.urlopen(req))["items"]

        item = None
        deadline = time.time() + 15
        while time.time() < deadline:
            found = [i for i in items() if i["title"].startswith("ZeroDivisionError")]
            if found and found[0].get("crash", {}).get("occurrences") == 2:
                item = found[0]
                break
            time.sleep(0.2)
        check(item is not None, "the two crashes are one item with 2 occurrences", json.dumps(items())[:500])
        check(len(items()) == 1, "and nothing else was filed")
        check(item["crash"]["users"] == 2 and item["reporter_count"] == 2, "two distinct users", item["crash"])
        check(item["app_version"] == "stats@0.3.1", "the release is the app version", item["app_version"])
        trace = item["stack_trace"]
        check(re.search(r"at mean \([^)]*stats_app\.py:10\)", trace) is not None, "the trace names mean() at line 10", trace)
        check(re.search(r"at report \([^)]*stats_app\.py:14\)", trace) is not None, "and report() that called it", trace)
        check("return sum(xs) / len(xs)" in trace, "with the failing source line", trace)
        check("loading scores for [email]" in (item.get("logs") or ""), "the breadcrumb is kept, scrubbed", item.get("logs"))
        everything = json.dumps(items())
        for leak in ("user-ann", "user-ben", "user-ann@mail.test"):
            check(leak not in everything, "no trace of the users' data (%s)" % leak)
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        check(re.search(r'loom_sentry_requests_total\{endpoint="(store|envelope)",outcome="stored"\} [1-9]', metrics)
              is not None, "loomd counted the stored requests", "")
        print("%d passed, 0 failed" % passed)
    finally:
        loomd.terminate()
        loomd.wait(timeout=20)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print("FAILED: %s" % e)
        print("%d passed, 1 failed" % passed)
        sys.exit(1)
