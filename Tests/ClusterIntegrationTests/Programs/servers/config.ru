# A Rack app for Puma under `cluster run`: a plain lambda, no gems beyond Puma's own.
# BOOT_DELAY_MS: sleep while the app loads (in each worker in cluster mode).
sleep Integer(ENV.fetch("BOOT_DELAY_MS", "0")) / 1000.0
run lambda { |_env|
  body = "puma #{Process.pid}\n"
  [200, { "Content-Type" => "text/plain", "Content-Length" => body.bytesize.to_s }, [body]]
}
