FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# PDF documents: WeasyPrint lays text out with Pango; DejaVu and Noto CJK cover Latin, Cyrillic, Greek and
# Chinese/Japanese/Korean names. (Chromium is only for the browser tests, in CI: not in the image.)
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt README.md ./
COPY billing_site billing_site
COPY customers customers
COPY metering metering
COPY catalog catalog
COPY subscriptions subscriptions
COPY invoicing invoicing
COPY payments payments
COPY portal portal
COPY webhooks webhooks
COPY manage.py ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && DEBUG=true python manage.py collectstatic --noinput
RUN useradd --system --uid 1000 billing && mkdir -p /app/var && chown billing /app/var
USER billing
EXPOSE 8000
CMD ["gunicorn", "-c", "billing_site/gunicorn.conf.py"]
