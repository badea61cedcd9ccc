#!/usr/bin/python3
"""The storefront and the operator console in a real browser: Debian's chromium, headless,
driven by Playwright (playwright-core from npm, pinned in tests/browser/package-lock.json),
through the edge (nginx serving web/ and proxying /api/), against the whole system: the
inventory processor, the order saga and the payment provider, both projectors, and the
notifier writing its maildir spool (where the test reads the verification codes).

The scenarios are in tests/browser/storefront.test.mjs: a buyer signs up, verifies, buys,
pays and sees PAID appear live; a second buyer sees SOLD_OUT; the operator restocks in the
console and the buyer's page shows the new stock without reloading. Screenshots of every page
go to FLASHSALE_SCREENSHOTS_DIR (default: the run directory's screenshots/; the README's are
made with FLASHSALE_SCREENSHOTS_DIR=docs/screenshots).

The limits the test stays under: every page comes from 127.0.0.1, so the edge's per-address
budget (200 requests/s, 256 open requests) and the API's (20 sign-ups and 60 log-ins per
minute per address; 4 event streams per member and 16 per address) are shared by all of its
tabs; it opens at most five tabs, signs up two members and logs in four times.
Usage: test_browser.py BUILD_DIR"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import ROOT, System  # noqa: E402

ADMIN_EMAIL = "operator@example.com"
ADMIN_PASSWORD = "a long operator password 7"
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
CATALOGUE_MIN = 60


def main(bindir):
    chromium = os.environ.get("FLASHSALE_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        raise SystemExit("%s is missing: run infra/bootstrap.sh (Debian package chromium)" % chromium)
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        raise SystemExit("playwright-core is missing: run infra/bootstrap.sh (npm ci in tests/browser)")
    run = os.environ.get("FLASHSALE_RUN_DIR", "/tmp")
    spool = tempfile.mkdtemp(prefix="spool-", dir=run)
    shots = os.path.abspath(os.environ.get("FLASHSALE_SCREENSHOTS_DIR") or os.path.join(run, "screenshots"))
    with System(bindir, sagas=True) as s:
        s.start_projector("postgres")
        s.start_projector("redis")
        s.start_notifier(spool)
        r = subprocess.run([os.path.join(bindir, "tools", "flashsale-admin"), "create", "--email", ADMIN_EMAIL],
                           input=(ADMIN_PASSWORD + "\n").encode(), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        deadline = time.time() + 60
        while s.request("GET", "/api/products?limit=1")[0] != 200:  # the catalogue's read model
            assert time.time() < deadline, "the catalogue never answered"
            time.sleep(0.3)
        # more products than one event stream follows (50), as in a real sale and as in a full
        # test run's shared log: the console must still follow the products its operator works
        # on (it once followed the first 50 of the catalogue and missed the new one)
        for i in range(CATALOGUE_MIN):
            s.create_product(10, name="filler %d" % i, starts="2030-01-01T00:00:00Z")
        env = dict(os.environ, FS_BASE_URL="http://127.0.0.1:%d" % s.port, FS_SPOOL=spool,
                   FS_ADMIN_EMAIL=ADMIN_EMAIL, FS_ADMIN_PASSWORD=ADMIN_PASSWORD, FS_SCREENSHOTS=shots,
                   FS_CHROMIUM=chromium)
        t = subprocess.run(["node", os.path.join(BROWSER_DIR, "storefront.test.mjs")], cwd=BROWSER_DIR, env=env,
                           timeout=540)
        assert t.returncode == 0, "browser scenarios failed (screenshots in %s)" % shots
        print("screenshots in %s" % shots)


if __name__ == "__main__":
    main(sys.argv[1])
    print("browser: PASS")
