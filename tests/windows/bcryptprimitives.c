/* For running the Windows tests under wine only, never shipped: Rust's standard library
 * (1.78 and later) takes its random numbers from ProcessPrng in bcryptprimitives.dll,
 * which every supported Windows has and wine 8.0 (Debian 12) lacks. This stand-in
 * answers from BCryptGenRandom, which wine has. Built and installed into the test's wine
 * prefix by scripts/check-windows.sh. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
