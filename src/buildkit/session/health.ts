import type { ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";

/** grpc.health.v1.Health: buildkitd checks it every 5 s and drops the session after two failures. */
export function createHealthService(): Partial<ServiceImpl<typeof Health>> {
  return {
    check: () => ({ status: HealthCheckResponse_ServingStatus.SERVING }),
  };
}
