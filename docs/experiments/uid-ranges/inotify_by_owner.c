/* Who is charged for a namespace's inotify instances (docs/security.md, "Inotify counts").
 * Two "sandboxes" (user namespaces mapping 0 to 400000 and to 465536); A takes every
 * inotify instance and holds them, then B tries.
 *   gcc -o inotify_by_owner inotify_by_owner.c
 *   ./inotify_by_owner 0  -> owners host root: A got 128, B got 0
 *   ./inotify_by_owner 1  -> owners each range's root: A got 128, B got 128 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/wait.h>
/* child in its own userns (owner = R or root), mapped 0 -> M; inotify_init until failure; hold */
static pid_t sbx(unsigned R, unsigned M, int hold, int *count_out){
  int a[2],b[2],c2[2]; pipe(a); pipe(b); pipe(c2);
  pid_t pid=fork();
  if(!pid){ char c; if(R){setgroups(0,NULL);setresgid(R,R,R);setresuid(R,R,R);prctl(PR_SET_DUMPABLE,1,0,0,0);}
    unshare(CLONE_NEWUSER); write(a[1],"x",1); read(b[0],&c,1); setresgid(0,0,0); setresuid(0,0,0);
    int n=0; while(inotify_init()>=0 && n<100000) n++; write(c2[1],&n,sizeof n); if(hold) pause(); _exit(0);}
  char c; read(a[0],&c,1); char p[64], m[64]; snprintf(m,64,"0 %u 65536\n",M);
  snprintf(p,64,"/proc/%d/uid_map",pid); int fd=open(p,O_WRONLY); write(fd,m,strlen(m)); close(fd);
  snprintf(p,64,"/proc/%d/gid_map",pid); fd=open(p,O_WRONLY); write(fd,m,strlen(m)); close(fd);
  write(b[1],"x",1); read(c2[0],count_out,sizeof *count_out); return pid; }
int main(int argc,char**argv){
  int own=atoi(argv[1]); int na, nb;
  pid_t A=sbx(own?400000:0, 400000, 1, &na);
  pid_t B=sbx(own?465536:0, 465536, 0, &nb);
  printf("owners %s: sandbox A (ids 400000) got %d inotify instances and holds them; sandbox B (ids 465536) then got %d\n", own?"= each range's root":"= host root", na, nb);
  kill(A,9); waitpid(A,0,0); waitpid(B,0,0); return 0; }
