#!/usr/bin/python3
"""deploy/container/Containerfile, checked without a container runtime.

usage: container_test.py TANDEM REPO_ROOT

- every package the runtime stage installs exists in Debian 12
  (`apt-cache show`), and together with what every Debian image has (libc6
  and the rest of dpkg's own dependencies) they provide every shared library
  `ldd TANDEM` lists (mapped with `dpkg -S`; sanitizer runtimes of an ASan
  build are left out: a release image has none);
- the base images are debian:12; the build stage installs with
  scripts/install-deps.sh --build (which the script accepts) and builds with
  meson -Dcuda=auto; the binary the runtime stage copies is the one that
  build produces (WORKDIR/builddir/tandem), and ENTRYPOINT ["tandem"] finds
  it on the image's PATH; the runtime stage runs as a non-root user;
- the HEALTHCHECK command (bash /dev/tcp, GET /health) passes against a
  live `tandem serve` and fails where nothing listens;
- every file COPY'd from the build context exists and is not left out by
  .dockerignore / .containerignore (which must agree), and those leave out
  build trees and node_modules.

Building the image needs docker or podman, which CI does not have.
"""
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import Proc, free_ports  # noqa: E402

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANITIZER_LIBS = re.compile(r"^lib(asan|ubsan|lsan|tsan|hwasan)\.so")


def logical_lines(text):
    """Instructions with continuations joined and comment lines dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_containerfile(path):
    """{"args": global ARG defaults, "stages": [{name, image, lines}],
    "copies": {context source: destination}}."""
    args, stages = {}, []
    for line in logical_lines(open(path).read()):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append({"name": name, "image": image, "lines": []})
        elif word == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        else:
            stages[-1]["lines"].append((word, rest))
    copies = {}
    for st in stages:
        for word, rest in st["lines"]:
            if word == "COPY" and "--from=" not in rest:
                src, dst = shlex.split(rest)[-2:]
                copies[src] = dst
    return {"args": args, "stages": stages, "copies": copies}


def ignored(path, patterns):
    """Whether a .dockerignore (its subset: globs, **/, no !) leaves path out."""
    parts = path.split("/")
    for pat in patterns:
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(p, pat[3:]) for p in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
            return True
    return False


def apt_packages(run_text):
    """Package names after `apt-get install` (options and $-expansions left out)."""
    pkgs = []
    for m in re.finditer(r"apt-get install((?:\s+[^&;|]+)?)", run_text):
        for tok in m.group(1).split():
            if not tok.startswith("-") and "$" not in tok:
                pkgs.append(tok)
    return pkgs


def owners(paths):
    """{path: the Debian package that installed it} (one dpkg -S for all;
    usr-merge aware: /lib/x is also looked up as /usr/lib/x and the real path)."""
    tries = {}
    for path in paths:
        cands = [path, os.path.realpath(path)]
        cands += [c[4:] if c.startswith("/usr/") else "/usr" + c for c in cands]
        tries[path] = cands
    r = subprocess.run(["dpkg", "-S", *sorted({c for cs in tries.values() for c in cs})],
                       capture_output=True, text=True)
    found = {}
    for line in r.stdout.splitlines():
        pkg, _, file = line.partition(": ")
        found[file.strip()] = pkg.split(":")[0]
    out = {}
    for path, cands in tries.items():
        hits = [found[c] for c in cands if c in found]
        assert hits, "no package owns " + path
        out[path] = hits[0]
    return out


def apt_records(names):
    """{package: its apt-cache record} for the names apt knows (one call)."""
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", *names],
                       capture_output=True, text=True)
    recs = {}
    for rec in r.stdout.split("\n\n"):
        m = re.search(r"^Package: (\S+)", rec, re.M)
        if m:
            recs.setdefault(m.group(1), rec)
    return recs


def in_every_image(dpkg_record):
    """dpkg (Essential) and what it depends on: in every Debian image."""
    deps = set()
    for field in re.findall(r"^(?:Pre-)?Depends: (.*)$", dpkg_record, re.M):
        deps |= {d.split()[0] for d in re.split(r"[,|]", field) if d.strip()}
    return {"dpkg", *deps}


def ldd(path):
    """{soname or path: file} of everything `path` loads (ldd)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    assert "not found" not in out, out
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line) or re.match(r"\s*(/\S+) \(", line)
        if m:
            libs[m.group(1)] = m.group(m.lastindex)
    return libs


def libraries(binary):
    """What the binary loads, without sanitizer runtimes (an ASan build's
    libasan, libubsan) and what only they pull in: the binary's own NEEDED
    entries (readelf -d), each with everything it loads in turn."""
    everything = ldd(binary)
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                         check=True).stdout
    libs = {k: v for k, v in everything.items() if k.startswith("/")}  # the loader
    for so in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn):
        if SANITIZER_LIBS.match(so):
            print("skip %s (sanitizer runtime: not in a release build)" % so)
            continue
        libs[so] = everything[so]
        libs.update(ldd(everything[so]))
    return libs


def main():
    tandem, root = sys.argv[1:3]
    cf_path = os.path.join(root, "deploy", "container", "Containerfile")
    cf = parse_containerfile(cf_path)
    build, runtime = cf["stages"][0], cf["stages"][-1]
    for st in cf["stages"]:
        assert st["image"] == "debian:12", "stage %s is on %s" % (st["name"], st["image"])

    def text(st, word):
        return "\n".join(rest for w, rest in st["lines"] if w == word)

    # Build stage: deps, meson, the binary's path.
    run = text(build, "RUN")
    assert "scripts/install-deps.sh --build" in run
    with open(os.path.join(root, "scripts", "install-deps.sh")) as f:
        assert re.search(r"^\s*--build\)", f.read(), re.M), "install-deps.sh accepts --build"
    m = re.search(r"meson setup (\S+)([^&]*)", run)
    assert m and "-Dcuda=auto" in m.group(2), "meson setup BUILDDIR ... -Dcuda=auto"
    workdir = text(build, "WORKDIR").split()[-1]
    built = os.path.join(workdir, m.group(1), "tandem")
    assert re.search(r"ninja -C %s\b" % re.escape(m.group(1)), run)
    # meson puts the binary at the top of its build directory, as here:
    assert os.path.basename(tandem) == "tandem" and os.path.exists(
        os.path.join(os.path.dirname(os.path.abspath(tandem)), "build.ninja"))

    # Runtime stage: ENTRYPOINT on PATH is the built binary; not root.
    entry = text(runtime, "ENTRYPOINT")
    assert entry.strip() == '["tandem"]', entry
    path = DEFAULT_PATH
    for rest in [r for w, r in runtime["lines"] if w == "ENV" and r.startswith("PATH=")]:
        path = rest[5:]
    from_build = {}
    for rest in [r for w, r in runtime["lines"] if w == "COPY" and "--from=" in r]:
        parts = shlex.split(rest)
        stage = parts[0].split("=", 1)[1]
        assert stage == build["name"], rest
        from_build[parts[-1]] = parts[-2]
    found = [d for d in path.split(":") if os.path.join(d, "tandem") in from_build]
    assert found, "ENTRYPOINT tandem: no COPY --from=build to a PATH directory"
    assert from_build[os.path.join(found[0], "tandem")] == built, \
        "the image's tandem is %s, the build makes %s" % (
            from_build[os.path.join(found[0], "tandem")], built)
    user = text(runtime, "USER").split()[-1] if text(runtime, "USER") else "root"
    assert user.split(":")[0] not in ("root", "0"), "runs as root"

    # HEALTHCHECK: its command, run here by bash, passes against a live
    # server on TANDEM_HEALTH_PORT and fails where nothing listens.
    hc = json.loads(re.search(r"CMD (\[.*\])$", text(runtime, "HEALTHCHECK")).group(1))
    assert hc[:2] == ["bash", "-c"], hc
    p = Proc([tandem, "serve", "--in-process", "--port", "0", "--threads", "1",
              "--model", os.path.join(root, "models", "tiny-v4")])
    try:
        port = p.wait_for(r"serving \S+ on http://[0-9.]+:(\d+)").group(1)
        for port_env, want in ((port, 0), (str(free_ports(1)[0]), 1)):
            r = subprocess.run(hc, env=dict(os.environ, TANDEM_HEALTH_PORT=port_env),
                               capture_output=True, timeout=10)
            assert (r.returncode == 0) == (want == 0), "HEALTHCHECK on %s: %d" % (
                port_env, r.returncode)
    finally:
        assert p.stop() == 0, p.text()

    # Context COPYs exist and are not ignored; the two ignore files agree.
    with open(os.path.join(root, ".dockerignore")) as f:
        ignore = f.read()
    with open(os.path.join(root, ".containerignore")) as f:
        assert f.read() == ignore, ".containerignore differs from .dockerignore"
    patterns = [line.strip() for line in ignore.splitlines()
                if line.strip() and not line.startswith("#")]
    for src in cf["copies"]:
        if src == ".":
            continue
        assert os.path.exists(os.path.join(root, src)), "COPY %s: no such file" % src
        assert not ignored(src, patterns), "COPY %s: .dockerignore leaves it out" % src
    for left_out in ("build", "build-asan", "tests/e2e/node_modules", ".git"):
        assert ignored(left_out, patterns), ".dockerignore sends " + left_out
    for kept in ("meson.build", "router/router.c", "models/tiny-v4/config.json"):
        assert not ignored(kept, patterns), ".dockerignore leaves out " + kept

    # Runtime packages: real Debian 12 packages covering every library.
    # The CUDA variant's packages (inside `if ...; fi`) are not checked here.
    pkgs = apt_packages(re.sub(r"\bif .*?\bfi\b", "", text(runtime, "RUN"), flags=re.S))
    assert pkgs, "the runtime stage installs no packages"
    on_debian12 = open("/etc/debian_version").read().startswith("12")
    recs = apt_records(["dpkg", *pkgs])
    unknown = [p for p in pkgs if p not in recs]
    assert not unknown, "apt-cache show finds no %s" % unknown
    base = in_every_image(recs["dpkg"])
    files = libraries(tandem)
    pkg_of = owners(files.values())
    needed = {lib: pkg_of[file] for lib, file in files.items()}
    missing = {lib: p for lib, p in needed.items() if p not in pkgs and p not in base}
    for lib, p in sorted(needed.items()):
        print("%-28s %-16s %s" % (lib, p, "installed" if p in pkgs else
                                   "in every image" if p in base else "MISSING"))
    assert not missing, "runtime stage lacks: %s" % missing
    extra = set(pkgs) - set(needed.values())
    print("ok: %d packages cover %d libraries%s%s" % (
        len(pkgs), len(needed), "; not linked directly: %s" % sorted(extra) if extra else "",
        "" if on_debian12 else " (this host is not Debian 12: apt-cache answered for it)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
