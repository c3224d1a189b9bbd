# Shoal under Bun: a small final image, non-root, health-checked.
#   docker build -t shoal .
#   docker run -p 9000:9000 -v $PWD/config.ts:/app/config.ts:ro shoal
#   docker run -p 9000:9000 -e SHOAL_BROKER_URL=redis://redis:6379/0 -e SHOAL_PUBLISH_TOKEN=secret shoal
# To bake a config in instead: FROM shoal, then COPY config.ts /app/config.ts.

FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; the runtime is the final image's Bun, so no install scripts are needed.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM oven/bun:1.4.5-slim
WORKDIR /app
ENV NODE_ENV=production \
    SHOAL_HOST=0.0.0.0 \
    SHOAL_PORT=9000
COPY --from=deps /app/node_modules ./node_modules
COPY package.json main.ts config.example.ts ./
COPY src ./src
# The config is $SHOAL_CONFIG if set, else /app/config.ts when present (mount it), else config.example.ts; SHOAL_*
# variables override it (see the README).
USER bun
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bun", "-e", "const r = await fetch(`http://127.0.0.1:${process.env.SHOAL_PORT}/healthz`); process.exit(r.ok ? 0 : 1)"]
ENTRYPOINT ["bun", "run", "main.ts"]
