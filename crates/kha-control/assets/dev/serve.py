#!/usr/bin/env python3
"""A stand-in for the control node's log endpoints, to develop kha.js alone.

    python3 serve.py [--port 8765]

Serves page.html as /jobs/NAME, /assets/kha.{js,css} from the directory above,
and three jobs:
  demo  a short finished log: colours, folds with timings, \\r progress, an error
  big   200,000 finished lines (~16 MB), for first-paint timing
  live  a running log that grows 40 lines a second (clock restarted by
        POST /control/restart) and ends "passed"
with /jobs/NAME/log.txt (Range: bytes=a- / a-b, as the control node) and
/api/v1/jobs/NAME/log/stream (SSE: `event: log`, `id: <offset after>`,
base64 `data`, resumes from Last-Event-ID or ?offset=, `event: end` last).
Pieces are 61 bytes so escapes and UTF-8 characters split across them.
POST /control/drop makes the next stream connection close after 5 pieces,
to force an EventSource reconnect. /api/v1/events is an idle event stream.
"""
import argparse, base64, http.server, json, os, threading, time, urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.dirname(HERE)
PIECE = 61
RATE = 40  # live lines per second

def demo_log():
    out = []
    out.append("travis_fold:start:worker_info\r\x1b[0K\x1b[33;1mWorker information\x1b[0m\r\n")
    out.append("hostname: demo\r\nversion: 1.0 \u2713 caf\u00e9 \u65e5\u672c\r\n")
    out.append("travis_fold:end:worker_info\r\x1b[0K\r\n")
    out.append("travis_fold:start:install\r\x1b[0Ktravis_time:start:a1\r\x1b[0K$ pip install -r requirements.txt\r\n")
    for p in range(0, 101, 10):
        out.append("Downloading %3d%%\r" % p)
    out.append("\r\n")
    out.append("\x1b[38;5;208m256-colour\x1b[0m \x1b[38;2;10;200;120mtruecolour\x1b[0m \x1b[7minverse\x1b[27m\r\n")
    out.append("travis_time:end:a1:start=1,finish=2,duration=2345000000\r\x1b[0K\r\n")
    out.append("travis_fold:end:install\r\x1b[0K\r\n")
    for i in range(1, 41):
        out.append("test_%02d ... \x1b[32mok\x1b[0m\r\n" % i)
    out.append("<script>window.__pwned=1</script> \"><img src=x onerror=window.__pwned=1>\r\n")
    out.append("\x1b[31;1mThe command \"pytest\" exited with 1.\x1b[0m\r\n")
    out.append("Done. Your build exited with 1.\r\n")
    return "".join(out).encode()

def big_log():
    out = []
    for i in range(200000):
        if i % 1000 == 0:
            out.append("travis_fold:start:part%d\r\x1b[0K" % (i // 1000))
        out.append("\x1b[32m%8d\x1b[0m compiling crate number %d of many, with padding to make it long enough\r\n" % (i, i))
        if i % 1000 == 999:
            out.append("travis_fold:end:part%d\r\x1b[0K\r\n" % (i // 1000))
    return "".join(out).encode()

def live_log():
    out = ["travis_fold:start:setup\r\x1b[0K$ ./setup.sh\r\n"]
    for i in range(1, 21):
        out.append("setup step %d \u00e9\u00e8\u2603\r\n" % i)
    out.append("travis_fold:end:setup\r\x1b[0K\r\n")
    for i in range(1, 201):
        out.append("\x1b[3%dmline %d\x1b[0m \u65e5\u672c\u8a9e \U0001F600 progress\r%d%%\r\n" % (i % 8, i, i))
    out.append("\x1b[32;1mThe command \"make\" exited with 0.\x1b[0m\r\n")
    return "".join(out).encode()

LOGS = {"demo": demo_log(), "big": big_log(), "live": live_log()}
state = {"live_start": time.time(), "drop": False}
lock = threading.Lock()

def committed(name):
    data = LOGS[name]
    if name != "live":
        return len(data)
    lines = int((time.time() - state["live_start"]) * RATE)
    n, pos = 0, 0
    while n < lines and pos < len(data):
        pos = data.find(b"\n", pos)
        pos = len(data) if pos < 0 else pos + 1
        n += 1
    return pos

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype, extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        path = urllib.parse.urlparse(self.path).path
        with lock:
            if path == "/control/drop":
                state["drop"] = True
            elif path == "/control/restart":
                state["live_start"] = time.time()
        self.send(200, b"ok\n", "text/plain")

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        parts = [p for p in u.path.split("/") if p]
        if parts[:1] == ["assets"] and len(parts) == 2 and parts[1] in ("kha.js", "kha.css"):
            with open(os.path.join(ASSETS, parts[1]), "rb") as f:
                body = f.read()
            ctype = "text/javascript" if parts[1].endswith(".js") else "text/css"
            return self.send(200, body, ctype + "; charset=utf-8", [("Cache-Control", "no-cache")])
        if len(parts) == 2 and parts[0] == "jobs" and parts[1] in LOGS:
            name = parts[1]
            final = name != "live" or committed(name) == len(LOGS[name])
            with open(os.path.join(HERE, "page.html")) as f:
                page = f.read()
            since = str(int(state["live_start"] * 1000))
            page = (page.replace("JOB", name).replace("FINAL", "true" if final else "false")
                    .replace("STATE", "passed" if final else "running").replace("SINCE", since))
            return self.send(200, page.encode(), "text/html; charset=utf-8")
        if len(parts) == 3 and parts[0] == "jobs" and parts[1] in LOGS and parts[2] == "log.txt":
            data = LOGS[parts[1]][:committed(parts[1])]
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                a = int(a)
                b = int(b) if b else len(data) - 1
                if a >= len(data):
                    return self.send(416, b"", "text/plain", [("Content-Range", "bytes */%d" % len(data))])
                body = data[a:b + 1]
                return self.send(206, body, "text/plain; charset=utf-8",
                                 [("Content-Range", "bytes %d-%d/%d" % (a, a + len(body) - 1, len(data)))])
            return self.send(200, data, "text/plain; charset=utf-8")
        if parts[:3] == ["api", "v1", "jobs"] and len(parts) == 6 and parts[3] in LOGS and parts[4:] == ["log", "stream"]:
            return self.stream(parts[3], q)
        if parts == ["api", "v1", "events"]:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                for _ in range(30):
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
            self.close_connection = True
            return
        self.send(404, b"<h1>Not found</h1>", "text/html")

    def stream(self, name, q):
        data = LOGS[name]
        last = self.headers.get("Last-Event-ID")
        offset = int(last) if last else int(q.get("offset", ["0"])[0])
        with lock:
            drop, state["drop"] = state["drop"], False
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.close_connection = True
        sent = 0
        try:
            self.wfile.write(b"retry: 200\n\n")
            while True:
                end = committed(name)
                if offset < end:
                    piece = data[offset:min(end, offset + PIECE)]
                    offset += len(piece)
                    self.wfile.write(b"event: log\nid: %d\ndata: %s\n\n" % (offset, base64.b64encode(piece)))
                    self.wfile.flush()
                    sent += 1
                    if drop and sent >= 5:
                        return  # a dropped connection: EventSource reconnects with Last-Event-ID
                    continue
                if end == len(data):
                    self.wfile.write(b"event: end\ndata: " + json.dumps({"state": "passed"}).encode() + b"\n\n")
                    self.wfile.flush()
                    return
                time.sleep(0.05)
        except OSError:
            pass

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    print("serving on http://127.0.0.1:%d/jobs/demo" % args.port, flush=True)
    srv.serve_forever()

if __name__ == "__main__":
    main()
