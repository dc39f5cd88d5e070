FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY billing_site billing_site
COPY customers customers
COPY metering metering
COPY subscriptions subscriptions
COPY invoicing invoicing
COPY payments payments
COPY webhooks webhooks
COPY manage.py ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && DEBUG=true python manage.py collectstatic --noinput
RUN useradd --system --uid 1000 billing && mkdir -p /app/var && chown billing /app/var
USER billing
EXPOSE 8000
CMD ["gunicorn", "-c", "billing_site/gunicorn.conf.py"]
