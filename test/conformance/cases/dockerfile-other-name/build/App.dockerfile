FROM busybox:local
COPY app.txt /app.txt
COPY build /build-dir
