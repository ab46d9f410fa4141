#!/usr/bin/env bash
# nginx.sh: the practical limit on this box, as http.sh runs it. Debian's nginx (the
# nginx-light package is enough) with WORKERS worker processes (default: one per core),
# each with its own `reuseport` socket on 127.0.0.1:PORT, answering every request with
# "Hello World\n" from the configuration (`return 200`), no access log, and no limit on
# the requests of a keep-alive connection (as the other servers; nginx's default closes
# one every 1000). Runs in the foreground: the master's pid is this script's. The
# configuration and nginx's own files go to ${TMPDIR:-/tmp}/nginx-hello-PORT.
#
#   PORT=8000 WORKERS=2 Benchmarks/http/nginx.sh
set -euo pipefail
PORT="${PORT:-8000}"
WORKERS="${WORKERS:-$(nproc)}"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || { echo "nginx.sh: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }
DIR="${TMPDIR:-/tmp}/nginx-hello-$PORT"
rm -rf "$DIR" && mkdir -p "$DIR"
cat >"$DIR/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes $WORKERS;
pid $DIR/nginx.pid;
error_log stderr warn;
$( [ "$(id -u)" -eq 0 ] && echo "user nobody nogroup;" )
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $DIR/body;
    proxy_temp_path $DIR/proxy;
    fastcgi_temp_path $DIR/fastcgi;
    uwsgi_temp_path $DIR/uwsgi;
    scgi_temp_path $DIR/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT reuseport backlog=4096;
        location / {
            default_type "text/plain; charset=utf-8";
            return 200 "Hello World\n";
        }
    }
}
CONF
exec "$NGINX" -p "$DIR" -c "$DIR/nginx.conf" -e stderr
