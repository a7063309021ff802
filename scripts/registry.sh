# Sourced by the demo and the benchmarks: helpers around a throwaway CNCF
# distribution registry on 127.0.0.1.

# start_registry DIR: serves DIR/registry on a free port; sets $host and
# $registry_pid. The caller stops it (stop_registry) in its EXIT trap.
start_registry() {
  local dir=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/registry"
  cat > "$dir/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir/registry}}
http: {addr: 127.0.0.1:$port}
YML
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  registry_pid=$!
  host=127.0.0.1:$port
  python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1); break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("the registry did not start")
PY
}

stop_registry() {
  [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null || true
}

# ref_names INDEX_JSON: the ref names an OCI index.json lists.
ref_names() {
  python3 -c 'import json,sys; print(" ".join(m["annotations"]["org.opencontainers.image.ref.name"] for m in json.load(open(sys.argv[1]))["manifests"]))' "$1"
}
