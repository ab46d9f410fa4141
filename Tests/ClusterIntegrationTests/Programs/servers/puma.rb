# Puma's settings under `cluster run`. With queue_requests (the default), a connection Puma
# has accepted but whose request has not arrived yet waits in Puma's reactor, and a
# graceful stop closes it unanswered: during a reload a client sees a reset now and then.
# Without it, a thread takes each accepted connection and answers it before Puma exits.
queue_requests false
