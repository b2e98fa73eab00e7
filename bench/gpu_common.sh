# Sourced by the bench/gpu_*.sh scripts on a fresh lent GPU machine (torch, no network).

# Wheels missing there travel in .whl/ and install into /tmp/site.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# decompress SRC DST: the carried dataset is gzip-compressed (to fit the tool's transfer
# limit); training reads an uncompressed copy.
decompress() {
    python3 - "$1" "$2" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1]) as src, h5py.File(sys.argv[2], "w") as dst:
    for k in src:
        dst.create_dataset(k, data=src[k][:], chunks=src[k].chunks)
    dst.attrs.update({**src.attrs, "compression": "none"})
PY
}
