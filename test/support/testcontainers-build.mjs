// Builds a Dockerfile directory with testcontainers-node as a test suite would:
// GenericContainer.fromDockerfile(dir).build(tag). Prints the tag and what build() returned.
import { GenericContainer } from "testcontainers";

const [dir, tag] = process.argv.slice(2);
const container = await GenericContainer.fromDockerfile(dir).build(tag, { deleteOnExit: false });
console.log(JSON.stringify({ built: tag, container: container.constructor.name }));
