/* A barrier for the threads of one parallel region: the time loops whose threads share
 * each step's products (fastrnn/_core.pyx, "Sharing each step's products").
 *
 * A step's product takes from tens of microseconds up, so the threads spin for the few
 * microseconds the other one usually needs, then yield the core: with more threads than
 * free cores a waiting thread must not keep the one it waits for off the CPU.  Sense
 * reversal: each thread keeps the sense of its last wait, so the barrier can be reused at
 * once, step after step, with no reset between.  The count is touched by atomic
 * read-modify-writes; the sense is released by the last thread to arrive and acquired by
 * the others, so what every thread wrote before the barrier is seen by all after it.
 */
#ifndef FASTRNN_BARRIER_H
#define FASTRNN_BARRIER_H

#include <sched.h>

typedef struct {
    int count;      /* threads arrived in this round */
    int sense;      /* flips when a round completes */
    int n;          /* the threads that take part */
} fr_barrier;

static inline void fr_barrier_init(fr_barrier *b, int n)
{
    b->count = 0;
    b->sense = 0;
    b->n = n;
}

static inline void fr_spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Wait until all b->n threads have arrived; ``sense`` is this thread's own, 0 at first. */
static inline void fr_barrier_wait(fr_barrier *b, int *sense)
{
    const int s = !*sense;
    unsigned spins = 0;
    *sense = s;
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, s, __ATOMIC_RELEASE);
        return;
    }
    while (__atomic_load_n(&b->sense, __ATOMIC_ACQUIRE) != s) {
        if (++spins < 20000)
            fr_spin_pause();
        else
            sched_yield();
    }
}

#endif /* FASTRNN_BARRIER_H */
