// weft/test/reference/readers/read_events.js v1 — reads a TensorBoard event file with peers' code and prints it
// as JSON lines: tfrecord's RecordReader frames each record and checks both masked CRC32Cs (fast-crc32c), protobufjs
// decodes each Event by TensorBoard's event.proto/summary.proto field numbers (declared below, as the .proto files
// give them). Usage: node read_events.js FILE
"use strict";
const protobuf = require("protobufjs");
const { RecordReader } = require("tfrecord/lib/record_reader");

const root = protobuf.Root.fromJSON({
  nested: {
    SessionLog: { fields: { status: { type: "int32", id: 1 }, checkpoint_path: { type: "string", id: 2 } } },
    Value: { fields: { tag: { type: "string", id: 1 }, simple_value: { type: "float", id: 2 } } },
    Summary: { fields: { value: { rule: "repeated", type: "Value", id: 1 } } },
    Event: {
      fields: {
        wall_time: { type: "double", id: 1 },
        step: { type: "int64", id: 2 },
        file_version: { type: "string", id: 3 },
        summary: { type: "Summary", id: 5 },
        session_log: { type: "SessionLog", id: 7 },
      },
    },
  },
});
const Event = root.lookupType("Event");

(async () => {
  const reader = await RecordReader.create(process.argv[2]);
  for (let record; (record = await reader.readRecord()) !== null;) {
    const e = Event.toObject(Event.decode(record), { longs: Number, defaults: false });
    const out = { step: e.step || 0, wall_time: e.wall_time };
    if (e.file_version) out.file_version = e.file_version;
    if (e.session_log) out.session_status = e.session_log.status;
    if (e.summary) out.scalars = Object.fromEntries(e.summary.value.map((v) => [v.tag, v.simple_value]));
    console.log(JSON.stringify(out));
  }
})().catch((err) => {
  console.error(`read_events.js: ${err.message}`);
  process.exit(1);
});
