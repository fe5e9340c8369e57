/* Why CRIU cannot dump a sandbox whose user namespace the range's root owns
 * (docs/security.md, "Inotify counts"). Host root reads the RLIMIT_NOFILE of a process in a
 * user namespace owned by host root (R = 0) or by uid R.
 *   gcc -o prlimit_by_owner prlimit_by_owner.c
 *   ./prlimit_by_owner 0       -> "owner 0: prlimit get -> ok"
 *   ./prlimit_by_owner 300000  -> "owner 300000: prlimit get -> Operation not permitted"
 *                                 (on a host whose root lacks CAP_SYS_RESOURCE) */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/resource.h>
int main(int argc,char**argv){
  unsigned R=atoi(argv[1]); int a[2],b[2]; pipe(a); pipe(b);
  pid_t pid=fork();
  if(!pid){ char c; if(R){setgroups(0,NULL);setresgid(R,R,R);setresuid(R,R,R);prctl(PR_SET_DUMPABLE,1,0,0,0);}
    unshare(CLONE_NEWUSER); write(a[1],"x",1); read(b[0],&c,1); setresgid(0,0,0); setresuid(0,0,0); pause(); _exit(0);}
  char c; read(a[0],&c,1); char p[64], m[64]; snprintf(m,64,"0 %u 65536\n",R?R:100000);
  snprintf(p,64,"/proc/%d/uid_map",pid); int fd=open(p,O_WRONLY); write(fd,m,strlen(m)); close(fd);
  snprintf(p,64,"/proc/%d/gid_map",pid); fd=open(p,O_WRONLY); write(fd,m,strlen(m)); close(fd);
  write(b[1],"x",1); usleep(100000);
  struct rlimit rl; int r=prlimit(pid,RLIMIT_NOFILE,NULL,&rl); printf("owner %u: prlimit get -> %s\n", R, r? strerror(errno):"ok");
  kill(pid,9); waitpid(pid,0,0); return 0; }
