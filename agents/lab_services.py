"""A managed-service stand-in for the lab and the tests: a real daemon process with a pid file.

    python -m agents.lab_services start|stop|status NAME --dir DIR [--control URL]
    python -S -P path/to/agents/lab_services.py ...   (the same, without site start-up: much faster)
    ... kill|hang|resume NAME --dir DIR    (SIGKILL / SIGSTOP / SIGCONT of the daemon's process group)

`start` spawns a detached daemon (`run`) that writes DIR/NAME.pid and idles until SIGTERM; it returns
once the pid file names a live process. `stop` sends SIGTERM (SIGKILL after a grace period) and waits
for the end. `status` answers like an LSB init script: 0 running, 3 stopped (no pid file), 1 dead but the
pid file exists (a crash: kill the daemon with SIGKILL and this is what the agent sees). A zombie counts
as dead. With `--control URL` (a lab AMI server's control API), start/stop also start/stop that
server's simulated DAHDI driver, so a stand-in board driver moves the lab's spans too.
When DIR/NAME.sip exists (the lab writes one for `ivr`: `sip=ADDR:PORT`, `agent=ADDR:PORT`,
`dialout=ADDR:PORT`, one per line), the daemon is the service's SIP endpoint: after writing its pid file
it execs a SIPp UAS (drills/sipp/lab_ivr.xml) bound to ADDR:PORT, so calls reach the IVR only while the
service runs, and a crash (SIGKILL of the pid) takes the endpoint down with it. `start` then returns only
once the SIP port is bound, and `stop` is graceful like a real IVR's: SIGUSR1 (SIPp's soft exit: new calls
are discarded, calls in progress end) for up to SIP_DRAIN_S, then SIGTERM. Without a `sipp` binary, or
with the port taken, it idles as usual.
When DIR/NAME.health exists (`ADDR:PORT`), the daemon answers HTTP there (200 to anything): its liveness
probe. A stopped (hung) daemon answers nothing. With both a SIP endpoint and a health port, SIPp runs as a
child that dies with the daemon (PR_SET_PDEATHSIG) and takes the daemon with it; `hang` stops the group.
A status check is one short interpreter start (tens of ms), so the imports are minimal (no argparse,
no pathlib) and the rest is imported where needed. Lab-only: production services are systemd units or
real commands.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

EXIT_RUNNING, EXIT_DEAD, EXIT_STOPPED, EXIT_USAGE = 0, 1, 3, 2
START_WAIT_S = 5.0
STOP_GRACE_S = 5.0
SIP_DRAIN_S = 3.0  # a SIP endpoint's calls in progress end within this (the lab IVR's calls last ~0.5 s)
USAGE = "usage: lab_services start|stop|status|kill|hang|resume|run NAME --dir DIR [--control URL]"


def _pidfile(directory: str, name: str) -> str:
    return os.path.join(directory, f"{name}.pid")


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def alive(pid: int) -> bool:
    """True when `pid` is a live process (not a zombie awaiting its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _sip_options(directory: str, name: str) -> dict[str, str] | None:
    """DIR/NAME.sip as a dict (`key=value` lines), or None when the service has no SIP endpoint."""
    try:
        with open(os.path.join(directory, f"{name}.sip")) as f:
            lines = f.read().split()
    except OSError:
        return None
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _sipp_argv(sip: dict[str, str]) -> list[str] | None:
    """The SIPp UAS command line of a SIP endpoint (drills/sipp/lab_ivr.xml), or None without sipp."""
    import shutil
    sipp = shutil.which("sipp")
    if sipp is None or "sip" not in sip:
        return None
    scenarios = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "drills", "sipp")
    addr, _, port = sip["sip"].rpartition(":")
    argv = [sipp, "-sf", os.path.join(scenarios, "lab_ivr.xml"), "-i", addr, "-p", port, "-bind_local",
            "-ci", addr, "-mi", addr, "-nostdin", "-key", "sipp_bin", sipp,
            "-key", "dialout_sf", os.path.join(scenarios, "uac_agent.xml")]
    for key in ("agent", "dialout"):
        argv += ["-key", key, sip.get(key, f"{addr}:{port}")]
    return argv


def _udp_bound(endpoint: str) -> bool:
    """Is a UDP socket bound to ADDR:PORT on this machine (Linux /proc/net/udp)?"""
    addr, _, port = endpoint.rpartition(":")
    try:
        ip = int.from_bytes(bytes(int(x) for x in addr.split(".")), "little")
        want = f"{ip:08X}:{int(port):04X}"
        with open("/proc/net/udp") as f:
            return any(line.split()[1] == want for line in f.readlines()[1:])
    except (OSError, ValueError, IndexError):
        return False


def _can_bind(endpoint: str) -> bool:
    """Is ADDR:PORT free for the SIP endpoint? (Something else on it: the service idles without SIP.)"""
    import socket
    addr, _, port = endpoint.rpartition(":")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((addr, int(port)))
    except (OSError, ValueError):
        return False
    return True


def _health_address(directory: str, name: str) -> tuple[str, int] | None:
    """DIR/NAME.health (`ADDR:PORT`): where the daemon answers its liveness probe, or None."""
    try:
        with open(os.path.join(directory, f"{name}.health")) as f:
            addr, _, port = f.read().strip().rpartition(":")
        return addr, int(port)
    except (OSError, ValueError):
        return None


def _serve_health(address: tuple[str, int]) -> None:
    """Answer every connection with `HTTP/1.0 200 OK` until a signal ends the process. A stopped (hung)
    process answers nothing: the kernel may accept the connection, but no reply ever comes."""
    import socket
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(address)
    except OSError as exc:
        print(f"health port {address[0]}:{address[1]}: {exc}", file=sys.stderr)
        while True:  # no health port: the probe fails, the service shows as hung (the truth)
            signal.pause()
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        try:
            conn.settimeout(1.0)
            conn.recv(2048)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                         b"Connection: close\r\n\r\nok\n")
        except OSError:
            pass
        finally:
            conn.close()


def _spawn_sipp(argv: list[str]) -> int:
    """Fork the SIP endpoint: it dies with this daemon (PR_SET_PDEATHSIG), and this daemon with it."""
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:
            os._exit(1)
        os.execv(argv[0], argv)
    return child


def _run(directory: str, name: str) -> int:
    path = _pidfile(directory, name)
    sip = _sip_options(directory, name)
    sipp = _sipp_argv(sip) if sip and _can_bind(sip.get("sip", "")) else None
    health = _health_address(directory, name)
    children: list[int] = []

    def bye(signum: int, frame: object) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        if _read_pid(path) == os.getpid():
            _unlink(path)
        sys.exit(0)

    draining: list[bool] = []

    def drain(signum: int, frame: object) -> None:
        """`stop` of a SIP endpoint: SIPp's soft exit (SIGUSR1) is for the SIPp child, not this daemon."""
        draining.append(True)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGUSR1)

    def child_died(signum: int, frame: object) -> None:
        for child in children:  # SIGCHLD also comes when the child stops or continues: only an exit counts
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(child, os.WNOHANG)[0] == child:
                    if draining:  # the calls ended after a stop: a clean exit
                        if _read_pid(path) == os.getpid():
                            _unlink(path)
                        os._exit(0)
                    os._exit(1)  # the SIP endpoint is gone: this daemon is too (a crash; the pid file stays)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)
    if sipp and health is None:
        os.execv(sipp[0], sipp)  # same pid: the pid file now names the SIP endpoint
    if sipp:
        signal.signal(signal.SIGCHLD, child_died)
        signal.signal(signal.SIGUSR1, drain)
        children.append(_spawn_sipp(sipp))
    if health is not None:
        _serve_health(health)
    while True:
        signal.pause()


def _start(directory: str, name: str) -> int:
    import subprocess  # only `start` needs it
    path = _pidfile(directory, name)
    pid = _read_pid(path)
    if pid is not None and alive(pid):
        return 0
    _unlink(path)
    os.makedirs(directory, exist_ok=True)
    sip = _sip_options(directory, name)
    endpoint = sip.get("sip") if sip and _sipp_argv(sip) and _can_bind(sip.get("sip", "")) else None
    child = subprocess.Popen(command("run", name, directory), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if _read_pid(path) == child.pid and (endpoint is None or _udp_bound(endpoint)):
            return 0
        if child.poll() is not None:
            print(f"{name}: daemon exited {child.returncode} during start", file=sys.stderr)
            return 1
        time.sleep(0.005)
    print(f"{name}: no pid file{' or SIP endpoint' if endpoint else ''} after {START_WAIT_S:g} s", file=sys.stderr)
    return 1


def _stop(directory: str, name: str) -> int:
    path = _pidfile(directory, name)
    pid = _read_pid(path)
    if pid is not None and alive(pid) and (_sip_options(directory, name) or {}).get("sip"):
        # A SIP endpoint stops like a real IVR: no new calls (SIPp's soft exit discards them, so the front
        # holds them), the calls in progress end, then it exits; SIGTERM only after SIP_DRAIN_S.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + SIP_DRAIN_S
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    if pid is not None and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _unlink(path)
    return 0


def _kill(directory: str, name: str) -> int:
    """SIGKILL the daemon's whole process group (it is a session leader): what a stop that hung needs."""
    path = _pidfile(directory, name)
    pid = _read_pid(path)
    if pid is not None and alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_GRACE_S
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        if alive(pid):
            print(f"{name}: pid {pid} still alive after SIGKILL", file=sys.stderr)
            return 1
    _unlink(path)
    return 0


def _signal(directory: str, name: str, signum: int) -> int:
    """SIGSTOP (hang) or SIGCONT (resume) the daemon's process group; 1 when it is not running."""
    pid = _read_pid(_pidfile(directory, name))
    if pid is None or not alive(pid):
        print(f"{name}: not running", file=sys.stderr)
        return 1
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        os.kill(pid, signum)
    return 0


def _status(directory: str, name: str) -> int:
    pid = _read_pid(_pidfile(directory, name))
    if pid is None:
        return EXIT_STOPPED
    return EXIT_RUNNING if alive(pid) else EXIT_DEAD


def _lab_driver(control: str | None, verb: str) -> int:
    if not control:
        return 0
    import urllib.request  # ~50 ms that a status check should not pay
    request = urllib.request.Request(f"{control.rstrip('/')}/driver/{verb}", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()
    except OSError as exc:
        print(f"lab AMI control {control}: driver {verb} failed: {exc}", file=sys.stderr)
        return 1
    return 0


def command(verb: str, name: str, directory: object) -> list[str]:
    """The argv that runs `verb` for `name` (what a command-backend config lists)."""
    return [sys.executable, "-S", "-P", os.path.abspath(__file__), verb, name, "--dir", str(directory)]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options: dict[str, str] = {}
    for flag in ("--dir", "--control"):
        if flag in args:
            at = args.index(flag)
            if at + 1 >= len(args):
                print(USAGE, file=sys.stderr)
                return EXIT_USAGE
            options[flag] = args.pop(at + 1)
            args.pop(at)
    verbs = {"start": _start, "stop": _stop, "status": _status, "run": _run, "kill": _kill,
             "hang": lambda d, n: _signal(d, n, signal.SIGSTOP), "resume": lambda d, n: _signal(d, n, signal.SIGCONT)}
    if len(args) != 2 or args[0] not in verbs or "--dir" not in options:
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    verb, name = args
    control = options.get("--control")
    if verb == "stop":
        return _lab_driver(control, "stop") or _stop(options["--dir"], name)
    code = verbs[verb](options["--dir"], name)
    return code or (_lab_driver(control, "start") if verb == "start" else 0)


if __name__ == "__main__":
    sys.exit(main())
