FROM busybox:local
COPY . /ctx
