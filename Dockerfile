# Shoal under Bun: a small final image, non-root, health-checked.
#   docker build -t shoal .
#   docker run -p 9000:9000 -v $PWD/config.ts:/app/config.ts:ro shoal
FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only (hono, valibot, @logtape/logtape); the runtime is the base image's Bun.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM oven/bun:1.4.5-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json main.ts config.example.ts ./
COPY src ./src
# /app/config.ts is used when present (mount it); otherwise config.example.ts.
USER bun
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bun", "-e", "const r = await fetch('http://127.0.0.1:9000/healthz'); process.exit(r.ok ? 0 : 1)"]
ENTRYPOINT ["bun", "run", "main.ts"]
CMD ["--host", "0.0.0.0"]
