"""gunicorn settings for production: `gunicorn -c billing_site/gunicorn.conf.py` (README, Production).

Sync workers, one per core (WEB_CONCURRENCY): every request is short and CPU-bound in Python (JSON,
validation) or waits on PostgreSQL for milliseconds, so a process per core keeps the cores busy without
the context switches and GIL contention of threads, and one slow client cannot stall others behind a
shared interpreter. Put a buffering proxy (nginx, a load balancer) in front: sync workers must not be
exposed to slow clients directly. More workers than cores can only queue for the same cores, and
PostgreSQL on the same host needs them too.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)
worker_class = "sync"
# Keep-alive lets a client (or the proxy) send batch after batch on one connection.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "30"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
# Recycle workers now and then, jittered so they never restart together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
wsgi_app = "billing_site.wsgi:application"
