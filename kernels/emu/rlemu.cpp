// The one definition the emulator's C++ needs: the running fiber's context, per OS thread (the
// trampoline sets it, rlemu::sync restores it after every switch). See rlemu.h.
#include "rlemu.h"

__thread rlemu_thread* rlemu_current = nullptr;

extern "C" void rlemu_release_thread(rlemu_thread* t) {
    delete static_cast<rlemu::AsyncCopies*>(t->async_copies);
    t->async_copies = nullptr;
}
