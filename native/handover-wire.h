/*
 * The listener hand-over's wire constants, shared by its two sides so they cannot drift apart: the
 * bridge that offers (cloister-init.c, `relay --hand-over`) and the guardian's addon that takes
 * (listener-handover.c). The whole format is in docs/internals/init-protocol.md (Role 3).
 */
#ifndef CLOISTER_HANDOVER_WIRE_H
#define CLOISTER_HANDOVER_WIRE_H

/* The offer's bytes; the listening socket rides with them as SCM_RIGHTS. */
#define HANDOVER_MAGIC "cloister-listener 1\n"
/* The guardian's one-byte answer once it accepts on the socket (listener-handover.ts sends it). */
#define HANDOVER_TAKEN '1'

#endif
