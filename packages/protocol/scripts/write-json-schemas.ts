// Regenerates packages/protocol/schema/*.schema.json from the zod schemas.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { jsonSchemas, jsonSchemaText } from "../src/jsonSchemas.js"

const dir = fileURLToPath(new URL("../schema/", import.meta.url))
mkdirSync(dir, { recursive: true })
for (const file of readdirSync(dir)) if (file.endsWith(".schema.json")) rmSync(`${dir}${file}`)
for (const [file, schema] of Object.entries(jsonSchemas())) writeFileSync(`${dir}${file}`, jsonSchemaText(schema))
console.log(`wrote ${Object.keys(jsonSchemas()).length} schemas to ${dir}`)
