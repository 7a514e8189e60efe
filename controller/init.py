"""`ccfo init --site NAME DIR`: write a starting config tree for a new site from ccfo's example.

    ccfo init --site NAME [--controller-url https://OPS:8443] [--state-dir DIR] [--group GROUP] DIR

Writes DIR/site.yaml (the example site with NAME, the journal under the state directory and, with
--controller-url, the controller's HTTPS settings), rules.yaml, checklists/, asterisk/ (the Asterisk
snippets), drills/ (a copy of the drills package's scenario library, when it ships one, to adapt),
secrets/ (0700, with a fresh random agent token, AMI secret and SNMP keys, 0600, tokens.yaml registering
the agent token, and a README of what goes where) and tls/ (a README). The result is validated with the
same loader as `ccfo check-config` before init reports success. DIR must be new or empty: init never
overwrites. With --group (as root: --group ccfo) the tree is readable by that group (secrets/ 0750, secret
files 0640), as the services' users need.

The example files come from the source checkout when ccfo runs from one, else from the installed wheel's
`share/ccfo` (setuptools data-files), found through the distribution's file list.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ccfo.config.loader import load_config
from ccfo.config.yamlpos import ConfigError
from ccfo.platform.auth import digest

NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
DEFAULT_STATE_DIR = "/var/lib/ccfo-controller"
GENERATED = ("agent-token", "ami-secret", "snmp-auth-key", "snmp-priv-key")
EXIT_OK, EXIT_USAGE = 0, 2


class InitError(Exception):
    """init cannot proceed; the message says why (exit 2)."""


def data_root() -> Path:
    """The directory holding config/, systemd/ and docs/: the source checkout, else the installed share/ccfo."""
    source = Path(__file__).resolve().parents[1]
    if (source / "pyproject.toml").is_file() and (source / "config" / "site.yaml").is_file():
        return source
    try:
        files = importlib.metadata.distribution("ccfo").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.as_posix().endswith("share/ccfo/config/site.yaml"):
            return Path(str(f.locate())).resolve().parents[1]
    fallback = Path(sys.prefix) / "share" / "ccfo"
    if (fallback / "config" / "site.yaml").is_file():
        return fallback
    raise InitError("cannot find ccfo's example config (share/ccfo/config): reinstall the ccfo wheel")


def scenario_files() -> list[Path]:
    """The drills package's shipped scenario library (drills/scenarios/*.yaml), if any."""
    try:
        folder = importlib.resources.files("drills") / "scenarios"
    except ModuleNotFoundError:
        return []
    path = Path(str(folder))
    return sorted(path.glob("*.yaml")) if path.is_dir() else []


def _set(text: str, section: str, key: str, value: str) -> str:
    """Replace `key`'s value in the top-level `section` (keeping a trailing comment), or add the key."""
    lines = text.splitlines(keepends=True)
    try:
        start = lines.index(f"{section}:\n")
    except ValueError:
        raise InitError(f"the example site.yaml has no top-level {section}: section") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "\n", "#")), len(lines))
    for i in range(start + 1, end):
        m = re.match(rf"^(  {re.escape(key)}:[ \t]*)([^#\n]*?)([ \t]*)(#.*)?\n$", lines[i])
        if m:
            prefix, old, gap, comment = m.groups()
            tail = " " * max(1, len(old) + len(gap) - len(value)) + comment if comment else ""
            lines[i] = f"{prefix}{value}{tail}\n"
            return "".join(lines)
    last = max(i for i in range(start, end) if lines[i].strip())
    lines.insert(last + 1, f"  {key}: {value}\n")
    return "".join(lines)


def site_yaml(example: str, name: str, state_dir: str, controller_url: str | None) -> str:
    """The example site.yaml, adapted: NAME, the journal under `state_dir`, the controller's HTTPS settings."""
    text = _set(example, "site", "name", name)
    text = _set(text, "site", "description", json.dumps(f"{name}: written by ccfo init, describe the site here"))
    text = _set(text, "controller", "journal", f"{state_dir.rstrip('/')}/journal.sqlite")
    if controller_url:
        parts = urlsplit(controller_url)
        if parts.scheme != "https" or not parts.hostname:
            raise InitError(f"--controller-url {controller_url!r}: expected https://HOST[:PORT]")
        port = parts.port or 443
        text = _set(text, "controller", "listen", f"0.0.0.0:{port}")
        for key, value in (("url", f"https://{parts.netloc}"), ("tls_cert_file", "tls/controller.crt"),
                           ("tls_key_file", "secrets/controller.key"), ("ca_file", "tls/ca.crt")):
            text = _set(text, "controller", key, value)
    header = (f"# Written by `ccfo init --site {name}` from ccfo's example site. Edit the hosts, their addresses,\n"
              "# services, spans and database sites to match yours (docs/installation.md); then check with\n"
              "#   ccfo check-config --config THIS-DIRECTORY\n")
    return header + text


def _secrets_readme(hosts: list[str]) -> str:
    per_host = "\n".join(f"  {h + '.key':<20}  the private key of {h}'s agent certificate (tls/{h}.crt)"
                         for h in hosts)
    return f"""\
Secrets of this ccfo site. Nothing here may be readable by others: the agent and the controller refuse
to start with a secret file whose mode lets others read it (run `chmod 600 FILE`, or 640 with the group
ccfo: `chown root:ccfo FILE`). ccfo reads every secret from a file, never from the command line.

Written by ccfo init (random; replace or rotate as you like):
  agent-token           the agents' bearer token (hosts.*.agent.token_file): the agents present it to
                        the controller and the controller to them. Its digest is in tokens.yaml.
  tokens.yaml           the controller's API users, digests only (controller.tokens_file). Add people:
                          ccfo token add NAME --role viewer|operator|admin --tokens-file secrets/tokens.yaml
                        prints the token once: keep it in that person's own file (CCFO_TOKEN_FILE).
  ami-secret            the AMI password of user ccfo (hosts.*.ami.secret_file). The same value goes in
                        Asterisk's manager-ccfo-secret.conf on each IPC host (docs/asterisk.md).
  snmp-auth-key         SNMPv3 authentication pass phrase of user ccfo (at least 8 characters).
  snmp-priv-key         SNMPv3 privacy (AES) pass phrase of user ccfo (at least 8 characters).

To add:
  pdu-community         the PDU's SNMP write community, for fencing (fencing.pdu.community_file).
  controller.key        the private key of the controller's certificate (tls/controller.crt).
{per_host}

See docs/installation.md for the certificates and docs/snmp.md for the SNMP users.
"""


TLS_README = """\
Certificates (public: may be world-readable). Their private keys live in ../secrets/ (mode 600 or 640).
  ca.crt           the CA that signed the certificates below; the controller verifies the agents with it
                   (hosts.*.agent.ca_file) and the agents verify the controller (controller.ca_file).
                   Operators' CLIs: export SSL_CERT_FILE=/etc/ccfo/tls/ca.crt
  controller.crt   the controller's API certificate: its subjectAltName names the host in controller.url.
  HOST.crt         each agent's certificate: its subjectAltName names the address in hosts.HOST.agent.url
                   (a managed server's: servers.NAME.agent.url).
docs/installation.md shows how to make them with openssl.
"""


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _copy_dir(src: Path, dst: Path, pattern: str, files: list[Path] | None = None) -> list[str]:
    chosen = files if files is not None else sorted(src.glob(pattern))
    if not chosen:
        return []
    dst.mkdir(mode=0o755)
    for f in chosen:
        _write(dst / f.name, f.read_text(encoding="utf-8"), 0o644)
    return [f"{dst.name}/{f.name}" for f in chosen]


def write_tree(target: Path, name: str, *, controller_url: str | None = None,
               state_dir: str = DEFAULT_STATE_DIR, group: str | None = None) -> list[str]:
    """Write the starting tree into `target` (new or empty); return the files written, relative to it."""
    if not NAME.match(name):
        raise InitError(f"--site {name!r}: a site name is lower case letters, digits, '.', '_' or '-', "
                        "starting with a letter")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InitError(f"{target} exists and is not an empty directory: ccfo init never overwrites a config")
    source = data_root() / "config"
    text = site_yaml((source / "site.yaml").read_text(encoding="utf-8"), name, state_dir, controller_url)
    target.mkdir(parents=True, exist_ok=True)
    _write(target / "site.yaml", text, 0o644)
    _write(target / "rules.yaml", (source / "rules.yaml").read_text(encoding="utf-8"), 0o644)
    written = ["site.yaml", "rules.yaml"]
    written += _copy_dir(source / "checklists", target / "checklists", "*.yaml")
    written += _copy_dir(source / "asterisk", target / "asterisk", "*.conf")
    written += _copy_dir(Path(), target / "drills", "", scenario_files())  # CONFIG/drills: the site's scenarios
    secret_dir = target / "secrets"
    secret_dir.mkdir(mode=0o700)
    secret_dir.chmod(0o700)  # whatever the umask
    values = {fname: secrets.token_urlsafe(32) for fname in GENERATED}
    for fname, value in values.items():
        _write(secret_dir / fname, value + "\n", 0o600)
    _write(secret_dir / "tokens.yaml", _tokens_yaml(values["agent-token"]), 0o600)
    _write(secret_dir / "README", _secrets_readme(_host_names(text)), 0o644)
    (target / "tls").mkdir(mode=0o755)
    _write(target / "tls" / "README", TLS_README, 0o644)
    written += [f"secrets/{f}" for f in (*GENERATED, "tokens.yaml", "README")] + ["tls/README"]
    if group:
        _share_with(target, group)
    _validate(target)
    return written


def _tokens_yaml(agent_token: str) -> str:
    """The controller's tokens file with the agents' token registered (its digest only)."""
    return ("# API tokens (SHA-256 digests only). Add people with:\n"
            "#   ccfo token add NAME --role viewer|operator|admin --tokens-file secrets/tokens.yaml\n"
            "tokens:\n"
            "  - name: agents        # secrets/agent-token, shared by the hosts' agents (role agent)\n"
            "    role: agent\n"
            f"    sha256: {digest(agent_token).hex()}\n")


def _host_names(site_text: str) -> list[str]:
    """Every machine with an agent (and so a certificate): the IPC hosts, then the managed servers."""
    data = yaml.safe_load(site_text) or {}
    return list(data.get("hosts", {})) + list(data.get("servers", {}))


def _share_with(target: Path, group: str) -> None:
    """Make the tree readable by `group` (the services' users), secrets included, never by others."""
    try:
        for path in [target, *target.rglob("*")]:
            shutil.chown(path, group=group)
    except (LookupError, PermissionError) as exc:
        raise InitError(f"--group {group}: {exc}") from exc
    secret_dir = target / "secrets"
    secret_dir.chmod(0o750)
    for f in secret_dir.iterdir():
        f.chmod(0o640 if f.name != "README" else 0o644)


def _validate(target: Path) -> None:
    try:
        load_config(target)
    except ConfigError as exc:  # the example and this module disagree: a bug, said plainly
        raise InitError("the config written does not validate (a ccfo bug, please report it):\n  "
                        + "\n  ".join(map(str, exc.problems))) from exc


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    try:
        written = write_tree(target, args.site, controller_url=args.controller_url, state_dir=args.state_dir,
                             group=args.group)
    except InitError as exc:
        print(f"ccfo init: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote a starting config for site {args.site} in {target}:")
    for f in written:
        print(f"  {f}")
    print("next: edit site.yaml (hosts, addresses, services, database sites), add people's API tokens and the "
          f"TLS files (secrets/README, tls/README), then: ccfo check-config --config {target}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`ccfo init`: hooked into controller.cli.build_parser."""
    p = sub.add_parser("init", help="write a starting config tree for a new site (site.yaml, rules, secrets, ...)")
    p.add_argument("--site", required=True, metavar="NAME", help="the site's name (site.name in site.yaml)")
    p.add_argument("--controller-url", metavar="URL",
                   help="https://HOST:PORT where agents reach the controller: sets its listen, url and TLS files")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help=f"the controller's journal directory (default {DEFAULT_STATE_DIR})")
    p.add_argument("--group", help="make the tree readable by this group (the services' group: ccfo)")
    p.add_argument("dir", metavar="DIR", help="the new config directory (e.g. /etc/ccfo); must be new or empty")
    p.set_defaults(func=cmd_init)
