/* The guardian's side of the listener hand-over: see listener-handover.c. */
#ifndef CLOISTER_LISTENER_HANDOVER_H
#define CLOISTER_LISTENER_HANDOVER_H

#include <node_api.h>

/* takeListener(connectionFd, port) -> fd, or null when no message has arrived yet; throws an
 * Error saying what is wrong with a message that is not a valid hand-over (nothing is kept). */
napi_value take_listener(napi_env env, napi_callback_info info);

#endif
