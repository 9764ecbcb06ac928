#!/usr/bin/env bash
# An emulated ARM64 "device": an arm64 Debian userland (debootstrap, Debian's own packages)
# run by qemu-user, with the aarch64 wheels of numpy, onnxruntime and ai-edge-litert, so
# that the SSH transport can reach an ARM Python on loopback. Latency is emulated; the
# outputs are those of the real aarch64 kernels of the wheels.
#
#   tests/devices/arm64/build.sh [ROOTFS]        (root; default ROOTFS=/opt/compressor-arm64)
#
# Writes ROOTFS and the wrapper ROOTFS-python (default /opt/compressor-arm64-python), which
# any user can run like a python3 (`... -c 'import platform; print(platform.machine())'`
# prints aarch64). Idempotent: every step leaves a stamp in ROOTFS and is skipped next time;
# the last step (a short check against the host's x86 outputs) always runs unless
# ARM64_VERIFY=0.
#
# Settings (environment):
#   ARM64_ROOTFS_MODE  auto (default): debootstrap's second stage in a chroot when binfmt_misc
#                      runs aarch64 binaries, else `extract`; chroot: second stage or fail;
#                      extract: unpack the downloaded .debs with dpkg-deb -x (no maintainer
#                      scripts; ~25 s instead of ~3 min, and enough for python3).
#   ARM64_SUITE        Debian suite (default bookworm: Python 3.11, like the host venv)
#   ARM64_MIRROR       default http://deb.debian.org/debian
#   ARM64_QEMU_CPU     CPU model qemu emulates (default cortex-a76: a Raspberry Pi 5 class
#                      core, NEON + dotprod, no SVE/SME); `max` enables every feature qemu has
#   ARM64_HOST_PYTHON  Python whose pip downloads the wheels and whose installed versions are
#                      the pins (default: the repo's .venv/bin/python)
#   ARM64_PACKAGES     what to pin (default: numpy onnxruntime ai-edge-litert)
#   ARM64_VERIFY       1 (default) / 0
set -euo pipefail

ROOTFS=${1:-/opt/compressor-arm64}
ROOTFS=$(realpath -m -- "$ROOTFS")
WRAPPER="${ROOTFS}-python"
MODE=${ARM64_ROOTFS_MODE:-auto}
SUITE=${ARM64_SUITE:-bookworm}
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
QEMU_CPU_MODEL=${ARM64_QEMU_CPU:-cortex-a76}
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../.." && pwd)
HOST_PY=${ARM64_HOST_PYTHON:-$REPO/.venv/bin/python}
PACKAGES=${ARM64_PACKAGES:-numpy onnxruntime ai-edge-litert}
QEMU=/usr/bin/qemu-aarch64-static
T0=$SECONDS

say() { printf '[arm64 %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "this step needs root: $1"; }
# The emulated python, as the wrapper runs it (usable before the wrapper exists).
guest_python() {
    QEMU_LD_PREFIX="$ROOTFS" QEMU_CPU="$QEMU_CPU_MODEL" PYTHONHOME=/usr "$QEMU" "$ROOTFS/usr/bin/$GUEST_PY" "$@"
}
umount_below() {  # what a failed second stage may leave mounted (proc, sys, dev/pts)
    local m
    for m in $(awk -v r="$ROOTFS/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" || true
    done
}

# --- 1. host packages --------------------------------------------------------------------
missing=()
for p in qemu-user-static binfmt-support debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# binfmt_misc first: qemu-user-static's postinst registers its handlers only if it is mounted.
BINFMT_NOTE=""
if [ ! -e /proc/sys/fs/binfmt_misc/register ] && [ "$(id -u)" = 0 ]; then
    BINFMT_NOTE=$(mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>&1) || true
fi
if [ ${#missing[@]} -gt 0 ]; then
    need_root "apt-get install ${missing[*]}"
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x "$QEMU" ] || die "$QEMU missing after installing qemu-user-static"

# --- 2. binfmt_misc (only the chroot second stage needs it; the wrapper does not) ----------
if [ -e /proc/sys/fs/binfmt_misc/register ]; then
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ "$(id -u)" = 0 ]; then
        BINFMT_NOTE=$(update-binfmts --import qemu-aarch64 2>&1 && update-binfmts --enable qemu-aarch64 2>&1) || true
    fi
    if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        BINFMT_NOTE="qemu-aarch64 registered: $(tr '\n' ' ' </proc/sys/fs/binfmt_misc/qemu-aarch64 | sed 's/ *magic.*//')"
    else
        BINFMT_NOTE="binfmt_misc mounted, but no qemu-aarch64 handler: ${BINFMT_NOTE:-?}"
    fi
else
    BINFMT_NOTE="binfmt_misc not available: ${BINFMT_NOTE:-not mounted}"
fi
say "$BINFMT_NOTE"

# --- 3. the arm64 Debian rootfs -------------------------------------------------------------
if [ ! -e "$ROOTFS/.compressor-rootfs" ]; then
    need_root "debootstrap into $ROOTFS"
    if [ -e "$ROOTFS" ] && [ -n "$(ls -A "$ROOTFS" 2>/dev/null)" ]; then
        # Only ever remove what this script started (an interrupted earlier run).
        [ -e "$ROOTFS/.compressor-building" ] || die "$ROOTFS exists, is not empty, and was not made by this script"
        umount_below
        rm -rf --one-file-system "$ROOTFS"
    fi
    mkdir -p "$ROOTFS"
    touch "$ROOTFS/.compressor-building"
    say "debootstrap --foreign: arm64 $SUITE minbase + python3 from $MIRROR"
    t=$SECONDS
    debootstrap --arch=arm64 --variant=minbase --foreign --include=python3 \
        "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS/.debootstrap-1.log" 2>&1 \
        || { tail -20 "$ROOTFS/.debootstrap-1.log" >&2; die "debootstrap first stage failed (log: $ROOTFS/.debootstrap-1.log)"; }
    say "first stage: $((SECONDS - t)) s, $(du -sh "$ROOTFS" | cut -f1)"
    stage=extract
    if [ "$MODE" != extract ]; then
        if chroot "$ROOTFS" /bin/true 2>"$ROOTFS/.binfmt-check.log"; then
            stage=chroot
        elif [ "$MODE" = chroot ]; then
            die "chroot cannot run aarch64 binaries ($BINFMT_NOTE): $(cat "$ROOTFS/.binfmt-check.log")"
        else
            say "chroot cannot run aarch64 binaries ($(head -c 200 "$ROOTFS/.binfmt-check.log")); unpacking instead"
        fi
    fi
    if [ "$stage" = chroot ]; then
        say "second stage in chroot (dpkg under qemu; ~3 min on 2 cores)"
        t=$SECONDS
        if chroot "$ROOTFS" /debootstrap/debootstrap --second-stage >"$ROOTFS/.debootstrap-2.log" 2>&1; then
            say "second stage: $((SECONDS - t)) s"
        else
            umount_below
            tail -20 "$ROOTFS/.debootstrap-2.log" >&2
            [ "$MODE" = chroot ] && die "second stage failed (log: $ROOTFS/.debootstrap-2.log)"
            say "second stage failed after $((SECONDS - t)) s; unpacking the .debs instead"
            stage=extract
        fi
        umount_below
    fi
    if [ "$stage" = extract ]; then
        # The first stage unpacked only the Required packages; python3 and its libraries are
        # downloaded but not unpacked. dpkg-deb -x them all (no maintainer scripts run).
        t=$SECONDS
        shopt -s nullglob
        debs=("$ROOTFS"/var/cache/apt/archives/*.deb)
        shopt -u nullglob
        [ ${#debs[@]} -gt 0 ] || die "no .deb left in $ROOTFS/var/cache/apt/archives to unpack"
        for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$ROOTFS"; done
        rm -f "$ROOTFS"/var/cache/apt/archives/*.deb
        say "unpacked ${#debs[@]} packages: $((SECONDS - t)) s"
    fi
    echo "$stage" >"$ROOTFS/.compressor-rootfs"
    rm -f "$ROOTFS/.compressor-building"
fi
rm -f "$ROOTFS"/var/cache/apt/archives/*.deb 2>/dev/null || true  # 38 MB the second stage leaves
GUEST_PY=$(cd "$ROOTFS/usr/bin" && ls python3.[0-9]* 2>/dev/null | grep -E '^python3\.[0-9]+$' | sort -V | tail -1) \
    || die "no python3 in $ROOTFS/usr/bin"
GUEST_VER=${GUEST_PY#python}
SITE=/usr/local/lib/$GUEST_PY/dist-packages   # on Debian's default sys.path, no PYTHONPATH needed
say "rootfs: $(cat "$ROOTFS/.compressor-rootfs") ($SUITE, $GUEST_PY)"

# --- 4. /proc/cpuinfo as an ARM kernel would write it ---------------------------------------
# qemu 7.2 passes the host's (x86) /proc/cpuinfo through, and onnxruntime's cpuinfo library
# crashes on it (SIGSEGV in `import onnxruntime`). qemu looks paths up in its -L prefix first,
# so ROOTFS/proc/cpuinfo is what the emulated programs read. Written from the emulated CPU
# itself: MIDR_EL1 (an mrs instruction) and the hwcaps qemu puts in the auxiliary vector.
CPUINFO_STAMP="$QEMU_CPU_MODEL $(nproc)"
if [ "$(cat "$ROOTFS/.compressor-cpuinfo" 2>/dev/null)" != "$CPUINFO_STAMP" ]; then
    need_root "write $ROOTFS/proc/cpuinfo"
    mkdir -p "$ROOTFS/proc"
    guest_python - >"$ROOTFS/proc/cpuinfo.new" <<'EOF'
import ctypes, mmap, os, struct
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt "
         "fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs "
         "sb paca pacg").split()
HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm "
          "svef64mm svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 "
          "smei8i32 smef16f32 smeb16f32 smef32f32 smefa64 wfxt").split()
aux = dict(struct.iter_unpack("<QQ", open("/proc/self/auxv", "rb").read()))
hw, hw2 = aux.get(16, 0), aux.get(26, 0)
feats = [n for i, n in enumerate(HWCAP) if hw >> i & 1] + [n for i, n in enumerate(HWCAP2) if hw2 >> i & 1]
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(struct.pack("<II", 0xD5380000, 0xD65F03C0))  # mrs x0, midr_el1; ret
midr = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
for cpu in range(os.cpu_count() or 1):
    print("processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: %s\nCPU implementer\t: 0x%02x\n"
          "CPU architecture: 8\nCPU variant\t: 0x%x\nCPU part\t: 0x%03x\nCPU revision\t: %d\n"
          % (cpu, " ".join(feats), midr >> 24 & 0xFF, midr >> 20 & 0xF, midr >> 4 & 0xFFF, midr & 0xF))
EOF
    mv "$ROOTFS/proc/cpuinfo.new" "$ROOTFS/proc/cpuinfo"
    chmod 644 "$ROOTFS/proc/cpuinfo"
    echo "$CPUINFO_STAMP" >"$ROOTFS/.compressor-cpuinfo"
    say "cpuinfo for $QEMU_CPU_MODEL: $(grep -m1 Features "$ROOTFS/proc/cpuinfo")"
fi

# --- 5. aarch64 wheels, pinned to the host venv's versions ----------------------------------
[ -x "$HOST_PY" ] || die "no host python at $HOST_PY (set ARM64_HOST_PYTHON)"
# Pins: the named distributions and, as constraints, every dependency the host has installed.
read -r REQS CONSTRAINTS < <("$HOST_PY" - $PACKAGES <<'EOF'
import re, sys
from importlib import metadata
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
reqs, cons, todo, seen = [], [], list(sys.argv[1:]), set()
while todo:
    name = todo.pop()
    if norm(name) in seen:
        continue
    seen.add(norm(name))
    try:
        d = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        if name in sys.argv[1:]:
            sys.exit("the host has no %s installed to pin" % name)
        continue
    (reqs if name in sys.argv[1:] else cons).append("%s==%s" % (d.metadata["Name"], d.version))
    for r in d.requires or ():
        if "extra ==" not in r:
            todo.append(re.match(r"[A-Za-z0-9._-]+", r).group(0))
print(",".join(sorted(reqs)), ",".join(sorted(cons)) or "-")
EOF
) || true
[ -n "$REQS" ] || die "could not read the versions to pin from $HOST_PY"
WHEELS_STAMP="$GUEST_VER $REQS $CONSTRAINTS"
if [ "$(cat "$ROOTFS/.compressor-wheels" 2>/dev/null)" != "$WHEELS_STAMP" ]; then
    need_root "pip install into $ROOTFS$SITE"
    say "aarch64 wheels for cp${GUEST_VER/./}: ${REQS//,/ } (deps: ${CONSTRAINTS//,/ })"
    t=$SECONDS
    GLIBC_MINOR=$(guest_python -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION").split(".")[1])') \
        || die "the emulated python does not start: $(guest_python -c pass 2>&1 | tail -3)"
    platforms=(--platform manylinux2014_aarch64)
    for i in $(seq 17 "$GLIBC_MINOR"); do platforms+=(--platform "manylinux_2_${i}_aarch64"); done
    cons_file=$(mktemp)
    tr ',' '\n' <<<"${CONSTRAINTS/#-/}" >"$cons_file"
    staging="$ROOTFS$SITE.new"
    rm -rf "$staging"
    # --no-compile: the host pip would embed host paths in the .pyc; compiled below instead.
    "$HOST_PY" -m pip install -q --disable-pip-version-check --no-compile --no-warn-script-location \
        --only-binary=:all: "${platforms[@]}" --implementation cp --python-version "$GUEST_VER" \
        --abi "cp${GUEST_VER/./}" --target "$staging" -c "$cons_file" ${REQS//,/ } 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
    rm -f "$cons_file"
    for r in ${REQS//,/ }; do  # pip's exit status is lost in the pipe above: check the result
        n=${r%%==*}; v=${r#*==}
        ls -d "$staging"/"$(tr '-' '_' <<<"$n")"-"$v".dist-info >/dev/null 2>&1 \
            || ls -d "$staging"/"$n"-"$v".dist-info >/dev/null 2>&1 \
            || die "pip did not install $r for aarch64 (is there a cp${GUEST_VER/./} aarch64 wheel?)"
    done
    rm -rf "$ROOTFS$SITE"
    mv "$staging" "$ROOTFS$SITE"
    # Precompile: users who cannot write here (anyone but root) would otherwise recompile
    # every module at every start, under emulation. Same 3.x: the host compiles (fast).
    if [ "$("$HOST_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$GUEST_VER" ]; then
        "$HOST_PY" -m compileall -q -j0 -s "$ROOTFS" -p / "$ROOTFS$SITE" >/dev/null || true
    else
        guest_python -m compileall -q -j0 "$SITE" >/dev/null || true
    fi
    chmod -R a+rX "$ROOTFS$SITE"
    echo "$WHEELS_STAMP" >"$ROOTFS/.compressor-wheels"
    say "wheels: $((SECONDS - t)) s, $(du -sh "$ROOTFS$SITE" | cut -f1)"
fi
# The stdlib has .pyc files after the second stage (py3compile); not after `extract`.
if [ ! -e "$ROOTFS/.compressor-stdlib-pyc" ]; then
    need_root "compile the stdlib of $ROOTFS"
    if [ "$("$HOST_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$GUEST_VER" ]; then
        "$HOST_PY" -m compileall -q -j0 -s "$ROOTFS" -p / -x '/(test|idlelib|lib2to3/tests)/' \
            "$ROOTFS/usr/lib/$GUEST_PY" >/dev/null || true
    else
        guest_python -m compileall -q -j0 -x '/(test|idlelib)/' "/usr/lib/$GUEST_PY" >/dev/null || true
    fi
    touch "$ROOTFS/.compressor-stdlib-pyc"
fi

# --- 6. the wrapper: an ARM python any user can run ---------------------------------------
# Explicit qemu with -L (QEMU_LD_PREFIX), no chroot, no binfmt needed: absolute paths are
# looked up in ROOTFS first and fall back to the host's, so /tmp/<work> and $HOME are the
# host's own. argv[0] (-0) is the wrapper itself, so sys.executable is the wrapper and a
# child process started with sys.executable is emulated too (binfmt or not); PYTHONHOME
# then keeps sys.prefix at /usr (else it is searched upwards from the wrapper's folder).
WRAPPER_TEXT="#!/bin/sh
# The emulated ARM64 python of $ROOTFS (made by tests/devices/arm64/build.sh).
export QEMU_LD_PREFIX='$ROOTFS'
export QEMU_CPU=\"\${ARM64_QEMU_CPU:-$QEMU_CPU_MODEL}\"
export PYTHONHOME=/usr
exec '$QEMU' -0 '$WRAPPER' '$ROOTFS/usr/bin/$GUEST_PY' \"\$@\"
"
if [ "$(cat "$WRAPPER" 2>/dev/null)" != "${WRAPPER_TEXT%$'\n'}" ]; then
    need_root "write $WRAPPER"
    printf '%s' "$WRAPPER_TEXT" >"$WRAPPER.new"
    chmod 755 "$WRAPPER.new"
    mv "$WRAPPER.new" "$WRAPPER"
    say "wrapper: $WRAPPER"
fi

# --- 7. check it: aarch64, imports, and the same outputs as the host's x86 runtimes -----------
[ "${ARM64_VERIFY:-1}" = 1 ] || { say "built (not verified): $WRAPPER"; exit 0; }
say "verify"
work=$(mktemp -d /tmp/compressor-arm64-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
t=$SECONDS
"$WRAPPER" -c 'import platform; print(platform.machine())' | grep -qx aarch64 \
    || die "$WRAPPER does not report aarch64: $("$WRAPPER" -c 'import platform; print(platform.machine())' 2>&1)"
say "platform.machine() = aarch64"
for what in "pass" "import numpy" "import onnxruntime" "import ai_edge_litert.interpreter"; do
    s=$(date +%s%N)
    "$WRAPPER" -c "$what" || die "$WRAPPER -c '$what' failed (exit $?)"
    say "$(printf 'start + %-34s %6d ms' "$what:" $((($(date +%s%N) - s) / 1000000)))"
done
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then  # any user, not only root
    out=$(cd / && runuser -u nobody -- "$WRAPPER" -c 'import platform, numpy, onnxruntime, ai_edge_litert.interpreter; print(platform.machine())' 2>"$work/nobody.err") \
        && [ "$out" = aarch64 ] || die "as user nobody: $out $(cat "$work/nobody.err")"
    [ -s "$work/nobody.err" ] && say "as user nobody, stderr said: $(tr '\n' ' ' <"$work/nobody.err" | sed 's/\x1b\[[0-9;]*m//g')"
    say "as user nobody: aarch64, imports work"
fi

# Tiny models and their x86 outputs, made by the host venv.
"$HOST_PY" - "$work" 2>"$work/host.log" <<'EOF' || { tail -20 "$work/host.log" >&2; die "could not make the tiny models on the host"; }
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
work = sys.argv[1]
rng = np.random.default_rng(0)
w = rng.standard_normal((64, 32)).astype(np.float32); b = rng.standard_normal(32).astype(np.float32)
g = helper.make_graph(
    [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["z"]),
     helper.make_node("Relu", ["z"], ["y"])], "tiny",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
    [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 8
onnx.save(m, os.path.join(work, "tiny.onnx"))
x = rng.standard_normal((4, 64)).astype(np.float32)
sess = ort.InferenceSession(os.path.join(work, "tiny.onnx"), providers=["CPUExecutionProvider"])
y_onnx = sess.run(None, {"x": x})[0]

import tensorflow as tf
class Tiny(tf.Module):
    def __init__(self):
        self.k = tf.constant(rng.standard_normal((3, 3, 3, 8)).astype(np.float32))
        self.w = tf.constant(rng.standard_normal((8 * 8 * 8, 10)).astype(np.float32))
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="img")])
    def __call__(self, img):
        h = tf.nn.relu(tf.nn.conv2d(img, self.k, 1, "SAME"))
        return {"logits": tf.matmul(tf.reshape(h, [1, -1]), self.w)}
t = Tiny()
conv = tf.lite.TFLiteConverter.from_concrete_functions([t.__call__.get_concrete_function()], t)
open(os.path.join(work, "tiny.tflite"), "wb").write(conv.convert())
from ai_edge_litert.interpreter import Interpreter
img = rng.standard_normal((1, 8, 8, 3)).astype(np.float32)
it = Interpreter(os.path.join(work, "tiny.tflite")); it.allocate_tensors()
it.set_tensor(it.get_input_details()[0]["index"], img); it.invoke()
y_tfl = it.get_tensor(it.get_output_details()[0]["index"])
def timed(f, n=20):
    f(); s = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - s) / n * 1e3
def tfl():
    it.set_tensor(it.get_input_details()[0]["index"], img); it.invoke()
np.savez(os.path.join(work, "io.npz"), x=x, y_onnx=y_onnx, img=img, y_tfl=y_tfl,
         ms=np.array([timed(lambda: sess.run(None, {"x": x})), timed(tfl)]))
EOF
chmod -R a+rX "$work"

# The same models under emulation, in the /tmp work folder (a host path, not in ROOTFS).
cat >"$work/check.py" <<'EOF'
import os, platform, sys, time
import numpy as np, onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter
work = sys.argv[1]
io = np.load(os.path.join(work, "io.npz"))
def timed(f, n=20):
    f(); s = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - s) / n * 1e3
s = time.perf_counter()
sess = ort.InferenceSession(os.path.join(work, "tiny.onnx"), providers=["CPUExecutionProvider"])
load = time.perf_counter() - s
y = sess.run(None, {"x": io["x"]})[0]
print("onnx    MatMul+Add+Relu [4,64]x[64,32]  max|arm-x86| = %.3g  (session %.2f s, %.3f ms/run; x86 %.3f ms)"
      % (np.abs(y - io["y_onnx"]).max(), load, timed(lambda: sess.run(None, {"x": io["x"]})), io["ms"][0]))
s = time.perf_counter()
it = Interpreter(os.path.join(work, "tiny.tflite")); it.allocate_tensors()
load = time.perf_counter() - s
inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
def run():
    it.set_tensor(inp, io["img"]); it.invoke()
run(); y = it.get_tensor(out)
print("tflite  Conv3x3+Relu+FC  [1,8,8,3]->[1,10]   max|arm-x86| = %.3g  (interpreter %.2f s, %.3f ms/run; x86 %.3f ms)"
      % (np.abs(y - io["y_tfl"]).max(), load, timed(run), io["ms"][1]))
with open(os.path.join(work, "written-by-arm.txt"), "w") as f:  # /tmp is the host's
    f.write(platform.machine())
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return line.split(None, 1)[1].strip()
def read(p):
    try:
        return open(p).read().strip()
    except OSError as e:
        return "absent (%s)" % e.__class__.__name__
import glob
print("machine=%s cpu_count=%s sched_getaffinity=%d VmHWM=%s kernel.arch=%s thermal_zones=%d cpufreq=%d"
      % (platform.machine(), os.cpu_count(), len(os.sched_getaffinity(0)), status("VmHWM"),
         read("/proc/sys/kernel/arch"), len(glob.glob("/sys/class/thermal/thermal_zone*")),
         len(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"))))
EOF
s=$(date +%s%N)
"$WRAPPER" "$work/check.py" "$work" 2> >(grep -v "^INFO: Created TensorFlow Lite XNNPACK delegate" >&2) || die "the tiny models failed under emulation (exit $?)"
[ "$(cat "$work/written-by-arm.txt" 2>/dev/null)" = aarch64 ] || die "the emulated python could not write into $work"
say "tiny models under emulation (whole run): $((($(date +%s%N) - s) / 1000000)) ms"
say "ok: $WRAPPER ($(du -sh --one-file-system "$ROOTFS" | cut -f1) in $ROOTFS; verify $((SECONDS - t)) s)"
