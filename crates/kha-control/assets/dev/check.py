#!/usr/bin/env python3
"""Drives headless Chromium (through chromedriver's WebDriver API, stdlib
only) against serve.py and checks kha.js: the 200,000-line log's first paint,
folds, permalinks, live growth, and that the bytes after a forced SSE
reconnect equal the log. Starts serve.py and chromedriver itself and stops
both (and so Chromium) whatever happens.

    python3 check.py            # exit 0 when every check passes
"""
import base64, json, os, socket, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("port %d never opened" % port)

class Driver:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900"]}}}}
        self.sid = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())["value"]

    def go(self, url):
        self.call("POST", "/session/%s/url" % self.sid, {"url": url})

    def js(self, script, *args):
        return self.call("POST", "/session/%s/execute/sync" % self.sid, {"script": script, "args": list(args)})

    def wait(self, expr, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            v = self.js("return " + expr)
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("timed out waiting for " + expr)

    def quit(self):
        try:
            self.call("DELETE", "/session/%s" % self.sid)
        except Exception:
            pass

failures = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)

def main():
    sport, dport = free_port(), free_port()
    procs = []
    drv = None
    try:
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "serve.py"), "--port", str(sport)],
                                      stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["/usr/bin/chromedriver", "--port=%d" % dport],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(sport)
        wait_port(dport)
        drv = Driver(dport)
        site = "http://127.0.0.1:%d" % sport
        from serve import LOGS  # the same bytes the server sends

        # 1. The 200,000-line log: first paint, and the last line reachable.
        for run in range(3):
            drv.go(site + "/jobs/big")
            drv.wait("window.khaLog && window.khaLog.paintMs", 30)
            ready, paint = drv.js("return [khaLog.readyMs, khaLog.paintMs]")
            print("     big log run %d: ready %.0f ms, first paint %.0f ms after navigation start" % (run + 1, ready, paint))
        check(paint < 1000, "200,000-line log painted in under 1 s (%.0f ms)" % paint)
        total = LOGS["big"].count(b"\n")  # 200,000 lines and 200 fold ends
        check(drv.js("return khaLog.lines()") == total, "%d lines" % total)
        drv.js("location.hash = '#L%d'" % (total - 1))
        drv.wait("document.getElementById('L%d')" % (total - 1))
        t = drv.js("return khaLog.text(%d)" % (total - 1))
        check(t == "  199999 compiling crate number 199999 of many, with padding to make it long enough",
              "last line reachable and right: %r" % t)
        check(drv.js("return document.querySelectorAll('#log li').length") < 400, "only visible lines in the DOM")

        # 2. Folds, permalinks, escaping, first error on the demo log.
        drv.go(site + "/jobs/demo#L4-L6")
        drv.wait("window.khaLog && khaLog.ready")
        hl = drv.js("return [...document.querySelectorAll('#log li.highlight')].map(l => l.id)")
        check(hl == ["L4", "L5", "L6"] and drv.js("return document.querySelector('.fold[data-fold=install]').getAttribute('aria-expanded')") == "true", "permalink range highlighted: %s" % hl)
        check(drv.js("return khaLog.text(6)") == "Downloading 100%", "\\r progress collapsed: %r" % drv.js("return khaLog.text(6)"))
        drv.go(site + "/jobs/demo")
        drv.wait("window.khaLog && khaLog.ready")
        check(drv.js("return document.querySelector('.fold[data-fold=worker_info]').getAttribute('aria-expanded')") == "false",
              "finished fold collapsed")
        check(not drv.js("return !!document.getElementById('L2')"), "collapsed fold hides its lines")
        drv.js("document.querySelector('.fold[data-fold=worker_info]').click()")
        drv.wait("document.getElementById('L2')")
        check(drv.js("return document.querySelector('.fold[data-fold=worker_info]').getAttribute('aria-expanded')") == "true",
              "fold expands on click")
        check(drv.js("return document.querySelector('.fold[data-fold=install] .dur').textContent") == "2.34s",
              "fold shows its travis_time duration")
        drv.js("document.getElementById('first-error').click()")
        n = drv.wait("location.hash")
        check(n == "#L" + str(LOGS["demo"].count(b"\n") - 1), "first error: %s" % n)
        check(not drv.js("return !!window.__pwned"), "log text is never markup")
        drv.js("location.hash = '#L3'")
        drv.wait("document.querySelector('#L3.highlight')")
        check(True, "permalink #L3 highlights its line")

        # 3. A running log: lines appear live, a forced reconnect loses nothing.
        urllib.request.urlopen(urllib.request.Request(site + "/control/restart", data=b"", method="POST")).read()
        drv.go(site + "/jobs/live")
        drv.wait("window.khaLog && khaLog.ready")
        first = drv.js("return khaLog.lines()")
        urllib.request.urlopen(urllib.request.Request(site + "/control/drop", data=b"", method="POST")).read()
        time.sleep(1.5)
        later = drv.js("return khaLog.lines()")
        check(later > first, "lines appear live (%d, then %d)" % (first, later))
        drv.js("document.getElementById('follow').click()")
        drv.wait("khaLog.state === 'passed'", 30)
        got = base64.b64decode(drv.js(
            "const b = khaLog.bytes(); let s = ''; for (let i = 0; i < b.length; i += 8192)"
            " s += String.fromCharCode.apply(null, b.subarray(i, i + 8192)); return btoa(s)"))
        check(got == LOGS["live"], "bytes() equals the log after a forced reconnect (%d of %d bytes)" % (len(got), len(LOGS["live"])))
        last = drv.js("return khaLog.lines()")
        check(drv.js("return !!document.getElementById('L%d')" % last), "follow keeps the tail in view")
        check(drv.js("return khaLog.text(3)") == "setup step 2 \u00e9\u00e8\u2603", "split UTF-8 decoded: %r" % drv.js("return khaLog.text(3)"))
    finally:
        if drv:
            drv.quit()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0

if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
