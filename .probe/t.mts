const t0 = Date.now();
await import("../test/helpers/egress.js");
console.log("import", Date.now() - t0);
